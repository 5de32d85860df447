"""netdef's Caffe schema: caffe_pb2.py is what the protocol buffer compiler makes of
caffe.proto (README, "The Caffe schema", says how to regenerate it), and it holds the
messages the compiler and the solver need."""
import ast
import importlib.util
import shutil
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from compiler.proto import caffe_pb2
from tests.conftest import ROOT

PROTO = ROOT / "compiler" / "proto"


def generator():
    """The command line of a protocol buffer compiler: protoc, or grpcio-tools' copy of it."""
    if shutil.which("protoc"):
        return ["protoc"]
    if importlib.util.find_spec("grpc_tools") is not None:
        return [sys.executable, "-m", "grpc_tools.protoc"]
    return None


def serialized_descriptor(generated):
    """The FileDescriptorProto bytes a generated _pb2 module registers (its AddSerializedFile
    argument), read without importing it: importing would register caffe.proto twice."""
    for node in ast.walk(ast.parse(generated)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile call in the generated module")


@pytest.mark.skipif(generator() is None, reason="no protocol buffer compiler: neither `protoc` nor "
                    "grpcio-tools (pip install grpcio-tools) is installed")
def test_the_generated_module_matches_the_schema(tmp_path):
    shutil.copy(PROTO / "caffe.proto", tmp_path)
    subprocess.run(generator() + ["-I.", "--python_out=.", "caffe.proto"], cwd=tmp_path, check=True)
    fresh = descriptor_pb2.FileDescriptorProto.FromString(
        serialized_descriptor((tmp_path / "caffe_pb2.py").read_text()))
    # The module's own bytes, not DESCRIPTOR.serialized_pb: the runtime writes that anew
    # (float defaults come back as float32 text, 1e-08 as 9.99999994e-09).
    committed = descriptor_pb2.FileDescriptorProto.FromString(
        serialized_descriptor((PROTO / "caffe_pb2.py").read_text()))
    # Compilers of other versions write other Python around it; the schema must be the same.
    assert fresh == committed, "caffe_pb2.py is stale: regenerate it (README, \"The Caffe schema\")"


def test_the_solver_messages_are_caffes():
    s = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    assert (s["net"].number, s["base_lr"].number, s["lr_policy"].number, s["type"].number,
            s["snapshot_prefix"].number, s["weights"].number) == (24, 5, 8, 40, 15, 42)
    assert caffe_pb2.SolverParameter().type == "SGD"
    state = caffe_pb2.SolverState.DESCRIPTOR.fields_by_name
    assert [(f.name, f.number) for f in caffe_pb2.SolverState.DESCRIPTOR.fields] == \
        [("iter", 1), ("learned_net", 2), ("history", 3), ("current_step", 4)]
    assert state["history"].message_type.name == "BlobProto"

"""netdef export: the standalone Python file computes what netdef's module computes (every
runtime module class, residual sums, concats, BatchNorm + Scale, shared blobs), safetensors
round-trip through netdef.load, ONNX agrees with onnxruntime, TorchScript where the
layers allow it, and a failing export writes nothing."""
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import netdef
from netdef.cli import main
from netdef.inference import export
from netdef.npz import write_npz
from tests.conftest import ROOT
from tests.nets import inputs, layer, parse_text
from tests.test_runtime_modules import compiled, feeds

LENET = ROOT / "zoo_defs" / "LeNet-5.prototxt"

# A residual block (BatchNorm + Scale, in-place ReLU, a sum), a concat of two branches,
# and two InnerProducts sharing their weights by param name.
RESIDUAL = inputs(data=(2, 3, 8, 8)) + "".join([
    layer("conv1", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }"),
    layer("bn1", "BatchNorm", ["conv1"], tops=["conv1"]),
    layer("scale1", "Scale", ["conv1"], "scale_param { bias_term: true }", tops=["conv1"]),
    layer("relu1", "ReLU", ["conv1"], tops=["conv1"]),
    layer("conv2", "Convolution", ["conv1"], "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }"),
    layer("res", "Eltwise", ["conv1", "conv2"]),
    layer("branch", "Convolution", ["data"], "convolution_param { num_output: 2 kernel_size: 1 }"),
    layer("cat", "Concat", ["res", "branch"]),
    layer("pool", "Pooling", ["cat"], "pooling_param { pool: AVE global_pooling: true }"),
    layer("fc_a", "InnerProduct", ["pool"], 'param { name: "shared_w" } param { name: "shared_b" } '
                                            "inner_product_param { num_output: 6 }"),
    layer("fc_b", "InnerProduct", ["pool"], 'param { name: "shared_w" } param { name: "shared_b" } '
                                            "inner_product_param { num_output: 6 }"),
    layer("out", "Eltwise", ["fc_a", "fc_b"], "eltwise_param { operation: MAX }"),
    layer("prob", "Softmax", ["out"]),
])

# Only layers TorchScript compiles (torch.nn's own modules): convolutions, ReLU, Softmax.
SCRIPTABLE = inputs(data=(1, 3, 6, 6)) + "".join([
    layer("conv", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 }"),
    layer("relu", "ReLU", ["conv"], tops=["conv"]),
    layer("score", "Convolution", ["conv"], "convolution_param { num_output: 3 kernel_size: 1 }"),
    layer("prob", "Softmax", ["score"]),
])


def randomized(text):
    gm = netdef.compile_net(parse_text(text))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in gm.state_dict().items():
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)      # positive: valid variances and factors
    return gm.eval()


def written_module(gm, folder):
    """Write gm as model.py + model.npz in `folder`, import the file, load() it."""
    (folder / "model.py").write_text(export.python_source(gm, "model.npz"))
    write_npz(folder / "model.npz", export.blob_arrays(gm)[0])
    spec = importlib.util.spec_from_file_location("exported_%d" % id(gm), folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not [m for m in sys.modules if m.startswith(("netdef", "compiler")) and m in vars(module)]
    return module.load()


def same_outputs(a, b):
    """Equal to float rounding: the written file calls BatchNorm then Scale where netdef's
    module fuses them into one batch_norm call."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["VISION", "LOSSES", "SSD"])
def test_python_file_computes_every_runtime_module_as_netdef_does(name, tmp_path):
    gm = compiled(name)
    gm.eval()
    model = written_module(gm, tmp_path)
    x = feeds(name)
    with torch.no_grad():
        same_outputs(model(**x), gm(**x))


def test_python_file_of_a_residual_concat_net_reads_as_hand_written(tmp_path):
    gm = randomized(RESIDUAL)
    model = written_module(gm, tmp_path)
    x = export.example_inputs(gm)
    with torch.no_grad():
        same_outputs(model(*x), gm(*x))
    source = (tmp_path / "model.py").read_text()
    assert "import netdef" not in source and "from compiler" not in source
    assert "self.conv1 = nn.Conv2d(in_channels=3, out_channels=4, kernel_size=(3, 3), padding=(1, 1))" in source
    # In place, as a person writes it: the blob keeps its name through bn, scale and relu.
    assert "conv1 = self.bn1(conv1)\n        conv1 = self.scale1(conv1)\n        conv1 = self.relu1(conv1)" in source
    assert "res = self.res(conv1, conv2)" in source and "cat = self.cat(res, branch)" in source
    assert "self.fc_b.weight = self.fc_a.weight" in source
    assert "'fc_b/0'" not in source        # a shared blob is stored once


def test_python_file_of_a_zoo_net(tmp_path):
    gm = netdef.load(str(ROOT / "zoo_defs" / "NIN-deploy.prototxt"))
    model = written_module(gm, tmp_path)
    x = export.example_inputs(gm)
    with torch.no_grad():
        same_outputs(model(*x), gm(*x))


def test_safetensors_round_trip_with_shared_blobs_once(tmp_path):
    safetensors = pytest.importorskip("safetensors", reason="safetensors is an optional extra")
    gm = randomized(RESIDUAL)
    path = tmp_path / "w.safetensors"
    export.write_safetensors(gm, path)
    with safetensors.safe_open(str(path), framework="np") as f:
        keys, metadata = set(f.keys()), f.metadata()
    assert {"conv1/0", "conv1/1", "bn1/0", "bn1/1", "bn1/2", "scale1/0", "scale1/1", "fc_a/0", "fc_a/1"} <= keys
    assert not {"fc_b/0", "fc_b/1"} & keys
    assert json.loads(metadata["shared"]) == {"fc_b/0": "fc_a/0", "fc_b/1": "fc_a/1"}
    assert metadata["format"] == "netdef-safetensors 1"
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(RESIDUAL)
    back = netdef.load(str(net_file), weights=str(path))
    x = export.example_inputs(gm)
    with torch.no_grad():
        same_outputs(back(*x), gm(*x))
    assert back.fc_b.weight is back.fc_a.weight


def test_a_safetensors_file_from_a_newer_netdef_is_refused(tmp_path):
    safetensors = pytest.importorskip("safetensors", reason="safetensors is an optional extra")
    path = tmp_path / "w.safetensors"
    safetensors.numpy.save_file({"conv/0": np.zeros((4, 3, 3, 3), np.float32)}, str(path),
                                metadata={"format": "netdef-safetensors 99"})
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(SCRIPTABLE)
    with pytest.raises(netdef.NetdefError, match="newer netdef"):
        netdef.load(str(net_file), weights=str(path))


def test_torchscript_where_the_layers_allow_it(tmp_path):
    gm = randomized(SCRIPTABLE)
    export.write_torchscript(gm, tmp_path / "m.pt")
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    x = export.example_inputs(gm)
    with torch.no_grad():
        same_outputs(scripted(*x), gm(*x))


def test_torchscript_refusal_names_the_layer_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "lenet.pt"
    safe = tmp_path / "lenet.py"
    code = main(["export", str(LENET), "--python", str(safe), "--torchscript", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "LeNet-5.prototxt" in err and "pool1" in err and "Pooling" in err
    assert "torch.export" in err and "--onnx" in err
    assert list(tmp_path.iterdir()) == []


def onnxruntime_or_skip():
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (test extra)")
    return pytest.importorskip("onnxruntime", reason="the ONNX check runs the model in onnxruntime (optional)")


@pytest.mark.parametrize("net", ["RESIDUAL", "LeNet-5"])
def test_onnx_agrees_with_onnxruntime(net, tmp_path):
    ort = onnxruntime_or_skip()
    gm = randomized(RESIDUAL) if net == "RESIDUAL" else netdef.load(str(LENET))
    export.write_onnx(gm, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    x = export.example_inputs(gm)
    assert [i.name for i in session.get_inputs()] == netdef.record(gm).input_names
    names = [o.name for o in session.get_outputs()]
    assert names == netdef.record(gm).output_names
    with torch.no_grad():
        expected = gm(*x)
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), x)})
    for name, value in zip(names, got):
        np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-4, rtol=1e-4)


def test_export_command_writes_python_safetensors_and_caffe_files(tmp_path, capsys):
    pytest.importorskip("safetensors", reason="safetensors is an optional extra")
    weights = tmp_path / "lenet.caffemodel"
    assert main(["compile", str(LENET), "--export-caffemodel", str(weights)]) == 0
    code = main(["export", str(LENET), "--weights", str(weights), "--python", str(tmp_path / "m.py"),
                 "--safetensors", str(tmp_path / "m.safetensors"), "--caffemodel", str(tmp_path / "again.caffemodel")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "m.npz").exists()
    # Caffe's files stay what compile --export-caffemodel writes, byte for byte.
    assert (tmp_path / "again.caffemodel").read_bytes() == weights.read_bytes()
    gm = netdef.load(str(LENET), weights=str(tmp_path / "m.safetensors"))
    reference = netdef.load(str(LENET), weights=str(weights))
    x = export.example_inputs(gm)
    with torch.no_grad():
        same_outputs(gm(*x), reference(*x))


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to export"),
    (["--python", "{tmp}/missing/m.py"], "does not exist"),
    (["--caffemodel", "{net}"], "is the input file"),
])
def test_export_refuses_bad_requests_and_writes_nothing(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, net=LENET) for a in argv]
    before = LENET.read_bytes()
    code = main(["export", str(LENET)] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and 1 <= len(err) <= 2 and message in err[0]
    assert list(tmp_path.iterdir()) == [] and LENET.read_bytes() == before

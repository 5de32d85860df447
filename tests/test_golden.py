"""Every golden case of ../shared/caffe-golden (layers/ and nets/) against netdef.

Each case runs through the public path a user takes (parse -> compile with the recipe
weights -> forward on input.npz), and the blobs are judged by the shared check_golden.py
with the case's own tolerance.
"""
import json

import numpy as np
import pytest
import torch

import netdef
from tests.conftest import GOLDEN, needs_shared, shared_tool


def cases(group):
    folder = GOLDEN / group
    return sorted(p.name for p in folder.iterdir() if (p / "case.json").exists()) if folder.is_dir() else []


def run_case(case_dir, tmp_path):
    case = json.loads((case_dir / "case.json").read_text())
    weights = shared_tool("caffe_weights").recipe_arrays(case["params"])
    inputs = dict(np.load(case_dir / "input.npz"))
    net = netdef.parse(case_dir / case["prototxt"], phase=case.get("phase", "TEST"),
                       input_shapes={k: v.shape for k, v in inputs.items()})
    model = netdef.compile_net(net, weights, outputs="all")
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(inputs[k]) for k in netdef.record(model).input_names})
    path = tmp_path / "out.npz"
    np.savez(path, **{k: v.numpy() for k, v in out.items()})
    return shared_tool("check_golden").check_case(str(case_dir), str(path))


@needs_shared
@pytest.mark.parametrize("name", cases("layers"))
def test_layer_case(name, tmp_path):
    ok, line = run_case(GOLDEN / "layers" / name, tmp_path)
    assert ok, line


@needs_shared
@pytest.mark.parametrize("name", cases("nets"))
def test_net_case(name, tmp_path):
    ok, line = run_case(GOLDEN / "nets" / name, tmp_path)
    assert ok, line


@needs_shared
@pytest.mark.parametrize("group, name", [("layers", "v1_format"), ("layers", "split_explicit"),
                                         ("nets", "bvlc_googlenet")])
def test_cli_run_is_how_a_case_is_checked(group, name, tmp_path):
    """`netdef run` with a real .caffemodel, as a user checks a case by hand."""
    from netdef.cli import main
    case_dir = GOLDEN / group / name
    case = json.loads((case_dir / "case.json").read_text())
    weights = case_dir / "weights.caffemodel"
    if not weights.exists():
        weights = tmp_path / "weights.caffemodel"
        weights.write_bytes(shared_tool("caffe_weights").caffemodel_bytes(case["params"]))
    out = tmp_path / "out.npz"
    assert main(["run", str(case_dir / case["prototxt"]), "--weights", str(weights),
                 "--input", str(case_dir / "input.npz"), "--output", str(out), "--blobs", "all"]) == 0
    ok, line = shared_tool("check_golden").check_case(str(case_dir), str(out))
    assert ok, line

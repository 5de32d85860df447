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
        out = model(**{k: torch.from_numpy(inputs[k]) for k in model.input_names})
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

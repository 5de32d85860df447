"""Every training case of ../shared/caffe-golden/train reproduces Caffe's trace.

Each case runs as a user runs it: `netdef train solver.prototxt --weights --feed --trace`
from inside a copy of the case folder (Caffe resolves the solver's net path against the
working directory), judged by the shared check_golden.py with the case's tolerance.
"""
import shutil

import pytest

from netdef.cli import main
from tests.conftest import GOLDEN, needs_shared, shared_tool


def cases():
    folder = GOLDEN / "train"
    return sorted(p.name for p in folder.iterdir() if (p / "case.json").exists()) if folder.is_dir() else []


@needs_shared
@pytest.mark.parametrize("name", cases())
def test_train_case(name, tmp_path, monkeypatch):
    case = tmp_path / name
    shutil.copytree(GOLDEN / "train" / name, case)
    monkeypatch.chdir(case)
    assert main(["train", "solver.prototxt", "--weights", "weights.caffemodel",
                 "--feed", "batches.npz", "--trace", "out.npz"]) == 0
    ok, line = shared_tool("check_golden").check_case(str(case), str(case / "out.npz"))
    assert ok, line

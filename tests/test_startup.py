"""Commands that compute nothing start without torch (importing it is most of a second,
more than the work of the command): summary, check, draw, convert and the help of every
command. Each runs as a user runs it, `python -m netdef.cli ...` in a fresh process, and
the test reads Python's import log (-X importtime) for torch; compile, which builds a
module, shows that the log does show it.
"""
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

NET = str(ROOT / "zoo_defs" / "ResNet-18-deploy.prototxt")


def imports(args, cwd=None):
    """(exit code, stdout, the top-level packages imported) of `netdef ARGS`."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "netdef.cli"] + args,
                          capture_output=True, text=True, cwd=cwd or ROOT)
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    return done.returncode, done.stdout, {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("args", [
    ["summary", NET],
    ["check", NET],
    ["draw", NET, "-o", "{tmp}/net.dot"],
    ["draw", NET, "-o", "{tmp}/net.html"],
    ["convert", NET, "-o", "{tmp}/net.net"],
    ["--help"],
    ["compile", "--help"],
    ["train", "--help"],
], ids=lambda args: "-".join(a for a in args if not a.startswith(("/", "{"))))
def test_commands_that_build_nothing_do_not_import_torch(args, tmp_path):
    code, out, packages = imports([a.format(tmp=tmp_path) for a in args])
    assert code == 0, out
    assert "torch" not in packages


def test_the_import_log_shows_torch_where_a_command_builds_a_module(tmp_path):
    code, _, packages = imports(["compile", str(ROOT / "zoo_defs" / "LeNet-5.prototxt"),
                                 "-o", str(tmp_path / "lenet.netdef")])
    assert code == 0 and "torch" in packages


def test_a_data_layer_takes_its_shapes_from_its_source_without_torch(tmp_path):
    """The data package's source-shapes hook runs in summary and check: an HDF5Data layer
    listing a feature-cache shard (one .npy per top) gets its tops' shapes from it."""
    pytest.importorskip("h5py", reason="HDF5Data sources need h5py (the hdf5 extra)")
    shard = tmp_path / "shard"
    shard.mkdir()
    np.save(shard / "feat.npy", np.zeros((6, 3, 5, 5), np.float32))
    np.save(shard / "label.npy", np.zeros((6,), np.float32))
    (tmp_path / "list.txt").write_text("shard\n")
    (tmp_path / "train_val.prototxt").write_text(
        'name: "h"\n'
        'layer { name: "data" type: "HDF5Data" top: "feat" top: "label" '
        'hdf5_data_param { source: "list.txt" batch_size: 4 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "feat" top: "ip" '
        'inner_product_param { num_output: 2 } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    outputs = {}
    for verb in ("summary", "check"):
        code, outputs[verb], packages = imports([verb, "train_val.prototxt", "--phase", "TRAIN"], cwd=tmp_path)
        assert code == 0, outputs[verb]
        assert "torch" not in packages
    data_row = outputs["summary"].splitlines()[2].split()
    assert data_row[:3] == ["data", "HDF5Data", "4x3x5x5"]

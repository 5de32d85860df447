"""The netdef command: exit codes, the compile table, saving without pickle, run."""
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import netdef
from netdef.cli import main
from tests.nets import CONV_RELU_FC, randn, write_net

NET = CONV_RELU_FC


@pytest.fixture
def net_file(tmp_path):
    return write_net(tmp_path, NET, "small.prototxt")


def test_compile_prints_a_table_with_totals(net_file, capsys):
    assert main(["compile", str(net_file)]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "2x4x6x6" in out
    assert "{:,} params".format(4 * 27 + 4 + 5 * 144 + 5) in out


def test_saved_module_loads_without_pickle_and_computes_the_same(net_file, tmp_path):
    # Weights that no filler gives (Caffe's default filler is constant 0): a save that
    # dropped or reordered them would load a different module.
    weights = {"conv1": [randn(4, 3, 3, 3, seed=1), randn(4, seed=2)],
               "fc": [randn(5, 144, seed=3), randn(5, seed=4)]}
    original = netdef.compile_net(netdef.parse(net_file), weights)
    caffemodel = tmp_path / "small.caffemodel"
    netdef.export(original, caffemodel)
    saved = tmp_path / "small.netdef"
    assert main(["compile", str(net_file), "--weights", str(caffemodel), "-o", str(saved)]) == 0
    with zipfile.ZipFile(saved) as z:
        assert sorted(z.namelist()) == ["format", "net.prototxt", "weights.caffemodel"]
    model = netdef.load(saved)
    x = torch.randn(2, 3, 8, 8)
    expected = original(x)["fc"]
    assert expected.abs().min() > 0
    assert torch.equal(model(x)["fc"], expected)


def test_run_writes_blobs_by_caffe_name_and_reshapes(net_file, tmp_path):
    saved = tmp_path / "w.netdef"
    main(["compile", str(net_file), "-o", str(saved)])
    np.savez(tmp_path / "in.npz", data=np.ones((3, 3, 8, 8), np.float32))
    assert main(["run", str(net_file), "--weights", str(saved), "--input", str(tmp_path / "in.npz"),
                 "--output", str(tmp_path / "out.npz"), "--blobs", "all"]) == 0
    out = np.load(tmp_path / "out.npz")
    assert sorted(out.files) == ["conv1", "data", "fc"]
    assert out["conv1"].shape == (3, 4, 6, 6) and (out["conv1"] >= 0).all()   # after relu1, in place


def test_user_errors_exit_1_with_one_located_line_and_no_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.prototxt"
    bad.write_text(NET.replace('bottom: "conv1" top: "fc"', 'bottom: "conv9" top: "fc"'))
    out = tmp_path / "out.netdef"
    assert main(["compile", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: %s:10: layer 'fc': unknown bottom blob 'conv9'" % bad)
    assert "Traceback" not in err and not out.exists()


def test_usage_errors_exit_2(capsys):
    assert main(["compile"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["compile", "x.prototxt", "--input-shape", "data=a,b"]) == 2


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netdef", "--debug", "compile", str(tmp_path / "missing.prototxt")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_net_option_chooses_a_net_of_a_dsl_file(tmp_path, capsys):
    source = tmp_path / "two.net"
    source.write_text('net A {\n    input data: 3x8x8\n    x = data -> conv(4, k=3)\n}\n'
                      'net B {\n    input data: 3x8x8\n    y = data -> conv(2, k=1)\n}\n')
    assert main(["compile", str(source), "--net", "B"]) == 0
    assert "1x2x8x8" in capsys.readouterr().out
    assert main(["compile", str(source)]) == 1
    assert "--net" in capsys.readouterr().err
    assert netdef.load(source, name="A")(torch.randn(1, 3, 8, 8))["x"].shape == (1, 4, 6, 6)


def test_version_is_printed_and_matches_the_package(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "netdef " + netdef.__version__

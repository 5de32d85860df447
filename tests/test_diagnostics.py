"""Every malformed input is one located message, exit code 1, no traceback, no output file.

The catalogue is tests/malformed/ (prototxt and netdef-language files): each file starts
with comments saying what its error must contain (`# expect:`), its hint (`# hint:`) and
its line (`# line:`). Broken weights are made here from a valid caffemodel. `netdef check` lists all the problems of a net at
once; the memory budget refuses nets before anything is allocated.
"""
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compiler.proto import caffe_pb2
from netdef.cli import main
from tests.nets import BROKEN, CONV_FC, write_net

MALFORMED = Path(__file__).parent / "malformed"
CATALOGUE = sorted(p for p in MALFORMED.iterdir() if p.suffix in (".prototxt", ".net"))


def header(path):
    """The `# key: value` comments at the top of a catalogue file."""
    fields = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#\s*(\w+):\s*(.*)$", line)
        if not m:
            break
        fields[m.group(1)] = m.group(2).strip()
    return fields


def run_cli(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return rc, out.out, out.err.splitlines()


def assert_one_located_error(err_lines, file, line=None):
    """One error in one or two lines: `error: FILE:LINE[:COL]: ...` and maybe a hint."""
    assert 1 <= len(err_lines) <= 2, "\n".join(err_lines)
    where = re.escape(str(file)) + (":%d(:\\d+)?" % line if line else "")
    assert re.match("error: %s: " % where, err_lines[0]), err_lines[0]
    if len(err_lines) == 2:
        assert err_lines[1].startswith("  hint: ")


def test_the_catalogue_is_large_enough():
    assert len(CATALOGUE) + len(BAD_WEIGHTS) + len(MISFIT_WEIGHTS) + len(BAD_FILES) >= 30


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.name)
def test_malformed_net(path, tmp_path, capsys):
    expect = header(path)
    net = tmp_path / path.name
    shutil.copy(path, net)
    out = tmp_path / "out.netdef"
    rc, _, err = run_cli(["compile", net, "-o", out] + expect.get("args", "").split(), capsys)
    assert rc == 1
    if path.suffix == ".net":
        # The DSL frontend quotes the source line and a caret under the column ("  | ...")
        # between the message and its hint; the message itself is still those two lines.
        err = [line for line in err if not line.startswith("  | ")]
    assert_one_located_error(err, net, int(expect["line"]) if expect["line"] != "none" else None)
    assert expect["expect"] in err[0]
    if "hint" in expect:
        assert expect["hint"] in err[1]
    assert os.listdir(tmp_path) == [net.name], "partial output left behind"
    # check finds the same problem (it reports every problem, here the only one).
    rc, _, err_check = run_cli(["check", net] + expect.get("args", "").split(), capsys)
    assert rc == 1 and [line for line in err_check if not line.startswith("  | ")] == err


@pytest.mark.parametrize("path", [p for p in CATALOGUE if p.suffix == ".prototxt"], ids=lambda p: p.name)
def test_convert_of_a_malformed_prototxt(path, tmp_path, capsys):
    """convert checks less than compile (it writes what the file says, shapes unchecked),
    but what it cannot write is a located error, never a traceback."""
    net = tmp_path / path.name
    shutil.copy(path, net)
    rc, _, err = run_cli(["convert", net, "-o", tmp_path / "out.net"], capsys)
    assert rc in (0, 1)
    if path.name == "layer_without_type.prototxt":
        assert rc == 1
        assert_one_located_error(err, net, int(header(path)["line"]))
        assert "the layer has no type" in err[0]


# ---- weights ----

NET = CONV_FC
SHAPES = {"conv": [(4, 3, 3, 3), (4,)], "fc": [(5, 144), (5,)]}


def caffemodel(shapes=SHAPES, data_sizes=None):
    net = caffe_pb2.NetParameter(name="w")
    for name, blob_shapes in shapes.items():
        layer = net.layer.add(name=name, type="X")
        for s in blob_shapes:
            blob = layer.blobs.add()
            blob.shape.dim.extend(s)
            n = data_sizes.get((name, s), int(np.prod(s))) if data_sizes else int(np.prod(s))
            blob.data.extend(np.linspace(-1, 1, n).tolist())
    return net.SerializeToString()


VALID = caffemodel()
BAD_WEIGHTS = {
    "truncated": VALID[:len(VALID) // 2],
    "truncated_in_a_varint": VALID[:1] + b"\xff",
    "length_past_the_end": b"\x0a\xff\xff\xff\x0f" + VALID,
    "field_number_zero": b"\x07" + VALID,
    "unknown_wire_type": b"\x0e" + VALID,
    "text_not_a_caffemodel": NET.encode(),
    "png_not_a_caffemodel": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "empty": b"",
    "data_shorter_than_shape": caffemodel(data_sizes={("fc", (5, 144)): 700}),
}
# Readable weights that do not fit: located at the layer in the net file (line 4 is conv).
MISFIT_WEIGHTS = {
    "wrong_blob_shape": caffemodel({"conv": [(4, 3, 5, 5), (4,)], "fc": SHAPES["fc"]}),
    "missing_bias_blob": caffemodel({"conv": SHAPES["conv"][:1], "fc": SHAPES["fc"]}),
}


@pytest.fixture
def net_file(tmp_path):
    return write_net(tmp_path, NET)


def test_the_valid_weights_load(net_file, tmp_path, capsys):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(VALID)
    rc, _, err = run_cli(["compile", net_file, "--weights", weights, "-o", tmp_path / "out.netdef"], capsys)
    assert rc == 0, err
    assert (tmp_path / "out.netdef").exists()


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS) + sorted(MISFIT_WEIGHTS))
def test_malformed_weights(case, net_file, tmp_path, capsys):
    weights = tmp_path / (case + ".caffemodel")
    weights.write_bytes({**BAD_WEIGHTS, **MISFIT_WEIGHTS}[case])
    before = sorted(os.listdir(tmp_path))
    rc, _, err = run_cli(["compile", net_file, "--weights", weights, "-o", tmp_path / "out.netdef"], capsys)
    assert rc == 1
    if case in MISFIT_WEIGHTS:
        assert_one_located_error(err, net_file, 4)
    else:
        assert_one_located_error(err, weights)
    assert sorted(os.listdir(tmp_path)) == before, "partial output left behind"


def _not_a_zip(tmp_path):
    path = tmp_path / "weights.netdef"
    path.write_bytes(b"PK\x03\x04 but not really a zip")
    return path


def _zip_without_index(tmp_path):
    path = tmp_path / "weights.netdef"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net.prototxt", NET)
    return path


BAD_FILES = {
    "weights_missing": lambda tmp_path: tmp_path / "nowhere.caffemodel",
    "weights_is_a_directory": lambda tmp_path: tmp_path,
    "netdef_not_a_zip": _not_a_zip,
    "netdef_without_blob_index": _zip_without_index,
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_weight_files(case, net_file, tmp_path, capsys):
    weights = BAD_FILES[case](tmp_path)
    before = sorted(os.listdir(tmp_path))
    rc, _, err = run_cli(["compile", net_file, "--weights", weights, "-o", tmp_path / "out.netdef"], capsys)
    assert rc == 1
    assert_one_located_error(err, weights)
    assert sorted(os.listdir(tmp_path)) == before


def test_binary_file_as_a_net(tmp_path, capsys):
    net = tmp_path / "model.prototxt"
    net.write_bytes(VALID)
    rc, _, err = run_cli(["compile", net], capsys)
    assert rc == 1
    assert_one_located_error(err, net)


def test_missing_net_file(tmp_path, capsys):
    rc, _, err = run_cli(["check", tmp_path / "nowhere.prototxt"], capsys)
    assert rc == 1
    assert_one_located_error(err, tmp_path / "nowhere.prototxt")


# ---- netdef check: every problem at once ----

MANY = BROKEN + '''layer { name: "big" type: "Pooling" bottom: "conv1" top: "big" pooling_param { pool: MAX kernel_size: 40 } }
layer { name: "odd" type: "Frobnicate" bottom: "conv1" top: "odd" }
'''


def test_check_lists_every_problem_with_lines_shapes_and_hints(tmp_path, capsys):
    path = write_net(tmp_path, MANY, "many.prototxt")
    rc, _, err = run_cli(["check", path], capsys)
    assert rc == 1
    errors = [line for line in err if line.startswith("error: ")]
    assert [re.match(r"error: [^:]+:(\d+): layer '([^']+)'", e).groups() for e in errors] == [
        ("6", "conv2"), ("11", "sum"), ("12", "big"), ("13", "odd")]
    assert "did you mean 'conv1'?" in err[1]
    # Shape errors show the bottoms' shapes; after2 (below the broken conv2) is not blamed.
    assert "[1, 8, 16, 16]" in errors[1] and "[1, 16, 16, 16]" in errors[1]
    assert not any("after2" in line for line in err)
    assert sum(line.startswith("  hint: ") for line in err) >= 3

    rc, out, _ = run_cli(["check", path, "--format", "json"], capsys)
    problems = json.loads(out)
    assert rc == 1 and [p["layer"] for p in problems] == ["conv2", "sum", "big", "odd"]
    assert all(p["file"] == str(path) and p["line"] for p in problems)


def test_check_of_a_valid_net(net_file, capsys):
    rc, out, err = run_cli(["check", net_file], capsys)
    assert rc == 0 and not err
    assert out.startswith("ok: %s: 3 layers" % net_file)


def test_check_weights_names_each_wrong_layer_at_its_line(net_file, tmp_path, capsys):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(caffemodel({"conv": [(4, 3, 5, 5), (4,)]}))
    rc, _, err = run_cli(["check", net_file, "--weights", weights], capsys)
    assert rc == 1
    assert err[0] == "error: %s:4: layer 'conv': blob 0 (weight) is 4x3x5x5 in %s, the net's is 4x3x3x3" % (
        net_file, weights)
    assert len(err) == 2          # and its hint: fc, which the file lacks, would keep its fillers
    rc, _, err = run_cli(["check", net_file, "--weights", weights, "--strict"], capsys)
    assert rc == 1 and err[2] == "error: %s:6: layer 'fc': %s has no weights for this layer" % (net_file, weights)
    weights.write_bytes(VALID)
    rc, out, _ = run_cli(["check", net_file, "--weights", weights], capsys)
    assert rc == 0 and "weights match" in out


# ---- memory budget ----

HUGE_FC = '''name: "huge"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 100000000 } }
'''


@pytest.fixture
def huge(tmp_path):
    path = tmp_path / "huge.prototxt"
    path.write_text(HUGE_FC)      # 768 x 1e8 float32 weights: 286 GiB
    return path


def test_memory_budget_refuses_before_allocating(huge, tmp_path, capsys):
    out = tmp_path / "huge.netdef"
    rc, _, err = run_cli(["compile", huge, "-o", out], capsys)
    assert rc == 1 and not out.exists()
    assert_one_located_error(err, huge, 4)
    assert "learnable blobs 286.5 GiB" in err[0] and "over the 16.0 GiB memory budget" in err[0]


def test_memory_budget_applies_to_run(huge, tmp_path, capsys):
    inputs = tmp_path / "in.npz"
    np.savez(inputs, data=np.zeros((1, 3, 16, 16), np.float32))
    out = tmp_path / "out.npz"
    rc, _, err = run_cli(["run", huge, "--input", inputs, "--output", out], capsys)
    assert rc == 1 and not out.exists()
    assert "memory budget" in err[0]


def test_memory_budget_is_configurable(net_file, monkeypatch, capsys):
    # The small net needs 8.4 KiB (its 3x3 convolution unfolds 3.8 KiB): the flag and the
    # environment variable both bound it.
    rc, _, err = run_cli(["check", net_file, "--max-memory", "4K"], capsys)
    assert rc == 1 and "over the 4.0 KiB memory budget" in err[0]
    assert run_cli(["check", net_file, "--max-memory", "9K"], capsys)[0] == 0
    monkeypatch.setenv("NETDEF_MAX_MEMORY", "4k")
    assert run_cli(["compile", net_file], capsys)[0] == 1
    assert run_cli(["compile", net_file, "--max-memory", "1M"], capsys)[0] == 0
    monkeypatch.setenv("NETDEF_MAX_MEMORY", "lots")
    rc, _, err = run_cli(["compile", net_file], capsys)
    assert rc == 1 and "NETDEF_MAX_MEMORY" in err[0]
    assert main(["check", str(net_file), "--max-memory", "lots"]) == 2

"""Issue 9's hardening: Caffe's odd-but-legal nets (duplicate layer names), nets that
compile to nothing or have too many axes, hostile archives, weights files and special
files, shapes that do not fit an InnerProduct, format versions, and start-up cost."""
import os
import warnings

import numpy as np
import pytest

import netdef
from compiler.errors import NetdefError, NetdefWarning
from netdef.cli import main

TWO_FC = '''name: "dup"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "a" inner_product_param { num_output: 4 } }
layer { name: "fc" type: "InnerProduct" bottom: "a" top: "b" inner_product_param { num_output: 5 } }
layer { name: "relu" type: "ReLU" bottom: "b" top: "b" }
'''


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_duplicate_layer_names_compile_and_weights_fill_the_first_as_caffe_does(tmp_path):
    path = write(tmp_path, "dup.prototxt", TWO_FC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = netdef.parse(path)
    dup = [w for w in caught if issubclass(w.category, NetdefWarning)]
    assert len(dup) == 1 and "2 layers named 'fc' (lines 3, 4)" in str(dup[0].message)
    assert [layer.key for layer in net.layers] == ["data", "fc", "fc#2", "relu"]
    w, b = np.ones((4, 3), np.float32), np.full(4, 0.5, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = netdef.compile_net(net, weights={"fc": [w, b]})
    record = netdef.record(gm)
    assert sorted(record.layer_names) == ["fc", "fc_2", "relu"]
    assert record.layer_names["fc_2"] == "fc"
    assert np.array_equal(gm.fc.weight.detach().numpy(), w)          # Caffe copies into the first
    assert gm.fc_2.weight.shape == (5, 4)                            # the second keeps its fillers
    import torch
    out = gm(torch.ones(2, 3))["b"]
    assert out.shape == (2, 5)


def test_duplicate_layer_names_warn_once_in_the_cli_and_convert_keeps_them(tmp_path, capsys):
    path = write(tmp_path, "dup.prototxt", TWO_FC)
    code, out, err = run_cli(["check", path], capsys)
    assert code == 0 and err.count("warning:") == 1 and "layers named 'fc'" in err
    code, out, err = run_cli(["convert", path, "-o", tmp_path / "dup.net"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["convert", tmp_path / "dup.net", "-o", tmp_path / "back.prototxt"], capsys)
    assert code == 0, err
    from compiler.frontends.prototxt import load_net
    names = [layer.name for layer in load_net(tmp_path / "back.prototxt").layers]
    assert names == ["data", "fc", "fc", "relu"]


def test_a_net_without_layers_is_refused_saying_why(tmp_path):
    with pytest.raises(NetdefError) as e:
        netdef.parse(write(tmp_path, "empty.prototxt", ""))
    assert "defines no layers" in str(e.value) and "0 layers" not in str(e.value)
    train_only = write(tmp_path, "t.prototxt", 'layer { name: "d" type: "Input" top: "d" '
                       'input_param { shape { dim: 1 } } include { phase: TRAIN } }\n')
    with pytest.raises(NetdefError) as e:
        netdef.parse(train_only)
    assert "no layer of the net is in the TEST net" in str(e.value) and "all 1 layers" in str(e.value)
    assert netdef.parse(train_only, phase="TRAIN").layers


def test_blobs_of_more_than_32_axes_are_refused_with_their_layer(tmp_path):
    dims = " ".join("dim: 1" for _ in range(33))
    path = write(tmp_path, "axes.prototxt", 'layer { name: "d" type: "Input" top: "d" '
                 'input_param { shape { %s } } }\n' % dims)
    with pytest.raises(NetdefError) as e:
        netdef.parse(path)
    assert (e.value.layer, e.value.line) == ("d", 1) and "33 axes" in str(e.value)


# ---- hostile files ----

FC_NET = '''name: "fc"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
'''


@pytest.fixture
def saved_net(tmp_path):
    path = write(tmp_path, "fc.prototxt", FC_NET)
    out = tmp_path / "fc.netdef"
    netdef.save(netdef.load(path), out)
    return out


def _patch_headers(data, local_offset, central_offset, value):
    """Set a field of every local (PK\\3\\4) and central (PK\\1\\2) zip header."""
    data = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        i = data.find(sig)
        while i >= 0:
            data[i + offset:i + offset + 2] = value(int.from_bytes(data[i + offset:i + offset + 2], "little")) \
                .to_bytes(2, "little")
            i = data.find(sig, i + 4)
    return bytes(data)


@pytest.mark.parametrize("change, words", [
    (lambda d: _patch_headers(d, 6, 8, lambda f: f | 1), "is encrypted"),
    (lambda d: _patch_headers(d, 8, 10, lambda m: 99), "compression method 99"),
    (lambda d: d[:60] + bytes(b ^ 0x5A for b in d[60:200]) + d[200:], "not a valid .netdef file"),
    (lambda d: d[:len(d) // 2], "not a valid .netdef file"),
])
def test_a_damaged_or_hostile_netdef_zip_is_a_located_error(saved_net, change, words, capsys):
    saved_net.write_bytes(change(saved_net.read_bytes()))
    code, out, err = run_cli(["check", saved_net], capsys)
    assert code == 1 and words in err and str(saved_net) in err and "Traceback" not in err


def test_a_netdef_zip_bomb_is_refused_from_its_declared_sizes(tmp_path, monkeypatch):
    import zipfile
    from compiler.frontends import saved
    bomb = tmp_path / "bomb.netdef"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(saved.NET_ENTRY, FC_NET)
        z.writestr(saved.WEIGHTS_ENTRY, bytes(64 << 20))        # 64 MiB of zeros: ~64 KB deflated
    assert bomb.stat().st_size < 1 << 20
    monkeypatch.setenv("NETDEF_MAX_MEMORY", "16M")
    with pytest.raises(NetdefError) as e:
        saved.read_saved(bomb)
    assert "declare 64.0 MiB, over the 16.0 MiB memory budget" in str(e.value)


def test_reading_a_saved_net_leaves_its_weights_entry_unread(tmp_path, monkeypatch, capsys):
    """Checking, summarising or converting a .netdef reads its net: a weights entry of any
    size (here over the budget) is inflated only when its weights are loaded."""
    import zipfile
    from compiler import pipeline
    from compiler.frontends import saved
    from compiler.frontends.weights import read_weights
    big = tmp_path / "big.netdef"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(saved.NET_ENTRY, FC_NET)
        z.writestr(saved.WEIGHTS_ENTRY, bytes(64 << 20))
    monkeypatch.setenv("NETDEF_MAX_MEMORY", "16M")
    assert [l.name for l in pipeline.read(big).layers] == ["data", "fc"]
    code, out, err = run_cli(["convert", big], capsys)
    assert code == 0 and 'net "fc"' in out
    with pytest.raises(NetdefError) as e:
        read_weights(big)
    assert "over the 16.0 MiB memory budget" in str(e.value)


def test_a_zip_entry_larger_than_its_header_says_is_not_inflated_past_it(saved_net):
    from compiler.frontends import saved
    # Shrink the declared size of the weights entry in its central header: the reader
    # must stop there (and say so), not inflate what the data holds.
    import zipfile
    with zipfile.ZipFile(saved_net) as z:
        info = z.getinfo(saved.WEIGHTS_ENTRY)
    data = bytearray(saved_net.read_bytes())
    central = data.find(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(saved.WEIGHTS_ENTRY)] != saved.WEIGHTS_ENTRY.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    data[central + 24:central + 28] = (info.file_size // 2).to_bytes(4, "little")
    saved_net.write_bytes(bytes(data))
    with pytest.raises(NetdefError) as e:
        saved.read_saved(saved_net)
    assert "not a valid .netdef file" in str(e.value)


def test_a_netdef_from_a_newer_netdef_is_refused_saying_so(saved_net):
    import zipfile
    from compiler.frontends import saved
    with zipfile.ZipFile(saved_net) as z:
        assert z.read(saved.FORMAT_ENTRY).decode() == "netdef-saved 1"
        entries = {n: z.read(n) for n in z.namelist()}
    entries[saved.FORMAT_ENTRY] = b"netdef-saved 7"
    with zipfile.ZipFile(saved_net, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(NetdefError) as e:
        netdef.load(saved_net)
    assert "newer netdef" in str(e.value) and "format 7" in str(e.value) and "up to 1" in str(e.value)
    del entries[saved.FORMAT_ENTRY]                 # written before versions: still read
    with zipfile.ZipFile(saved_net, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    assert netdef.load(saved_net) is not None


def _caffemodel(layers):
    """A caffemodel of {name: [(shape, values)]} written with Caffe's protobuf schema."""
    from compiler.proto import caffe_pb2
    msg = caffe_pb2.NetParameter()
    for name, blobs in layers.items():
        layer = msg.layer.add(name=name, type="InnerProduct")
        for shape, values in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(values)
    return msg.SerializeToString()


def test_a_caffemodel_is_mapped_and_only_the_blobs_a_net_uses_are_materialised(tmp_path):
    from compiler.frontends.caffemodel import read_caffemodel
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_caffemodel({"fc": [((4, 18), [0.5] * 72), ((4,), [1.0] * 4)],
                                  "extra": [((1000, 100), [0.0] * 100000)]}))
    layers = read_caffemodel(path)
    extra = next(fl for fl in layers if fl.name == "extra").blobs[0]
    assert not extra.flags.owndata and extra.flags.writeable      # a view into the map
    gm = netdef.load(write(tmp_path, "fc.prototxt", FC_NET), weights=path)
    assert float(gm.fc.weight[0, 0]) == 0.5
    assert netdef.record(gm).weights.ignored == ("extra",)


@pytest.mark.parametrize("shape, words", [
    ([1 << 40, 0], "a dimension over"),
    ([1] * 33, "more than 32 axes"),
])
def test_caffemodel_blob_shapes_caffe_refuses_are_located_errors(tmp_path, shape, words):
    from compiler.frontends.caffemodel import read_caffemodel
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_caffemodel({"fc": [(shape, [0.0] * (1 if 0 not in shape else 0))]}))
    with pytest.raises(NetdefError) as e:
        read_caffemodel(path)
    assert words in str(e.value) and e.value.layer == "fc" and e.value.file == str(path)


def test_used_blobs_over_the_memory_budget_are_refused_before_they_are_read(tmp_path):
    from compiler.frontends.caffemodel import read_caffemodel
    from compiler.passes.weights import match_weights
    path = tmp_path / "w.caffemodel"
    path.write_bytes(_caffemodel({"fc": [((4, 18), [0.5] * 72), ((4,), [1.0] * 4)]}))
    net = netdef.parse(write(tmp_path, "fc.prototxt", FC_NET))
    with pytest.raises(NetdefError) as e:
        match_weights(net, read_caffemodel(path), str(path), max_memory=100)
    assert "over the 100 B memory budget" in str(e.value)


def _special_files(tmp_path):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    return [("/dev/zero", "a character device"), (fifo, "a FIFO"), (loop, "symbolic links"), (tmp_path, "a directory")]


def test_special_files_are_refused_without_reading_them(tmp_path, capsys):
    import numpy as np
    net = write(tmp_path, "fc.prototxt", FC_NET)
    arrays = tmp_path / "in.npz"
    np.savez(arrays, data=np.zeros((1, 2, 3, 3), np.float32))
    for special, words in _special_files(tmp_path):
        for argv in (["check", special], ["summary", special],
                     ["run", net, "--weights", special, "--input", arrays, "--output", tmp_path / "o.npz"],
                     ["run", net, "--input", special, "--output", tmp_path / "o.npz"]):
            code, out, err = run_cli(argv, capsys)
            assert code == 1 and words in err and "Traceback" not in err, (argv, err)


# ---- inputs that do not fit an InnerProduct's weights, from Python ----

def test_an_input_of_another_size_names_the_inner_product_and_both_counts(tmp_path):
    import torch
    gm = netdef.load(write(tmp_path, "fc.prototxt", FC_NET))
    assert gm(torch.zeros(1, 2, 3, 3))["fc"].shape == (1, 4)
    with pytest.raises(NetdefError) as e:
        gm(torch.zeros(1, 2, 4, 4))
    assert e.value.layer == "fc" and "32 values" in str(e.value) and "take 18" in str(e.value)
    traced = torch.fx.symbolic_trace(gm)               # still one traceable call
    assert traced(torch.zeros(1, 2, 3, 3))["fc"].shape == (1, 4)
    with pytest.raises(NetdefError):
        traced(torch.zeros(1, 2, 4, 4))


# ---- start-up ----

def _python(code):
    import subprocess
    import sys
    from tests.conftest import ROOT
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_building_a_module_does_not_import_sympy(tmp_path):
    """torch.nn.utils.skip_init imports sympy (a third of a second) on first use; the
    fillers set every value, so the convolutions are built without it."""
    path = write(tmp_path, "c.prototxt", FC_NET.replace('type: "InnerProduct"', 'type: "Convolution"').replace(
        "inner_product_param { num_output: 4 }", "convolution_param { num_output: 4 kernel_size: 1 }"))
    done = _python("import sys, netdef; gm = netdef.load(%r); assert gm.fc.weight.device.type == 'cpu'; "
                   "print(sorted(m for m in ('sympy', 'torch') if m in sys.modules))" % str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['torch']"]


# ---- memory figures ----

CONV_RELU = '''name: "cr"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 8 dim: 8 } } }
layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
layer { name: "s" type: "Split" bottom: "c" top: "s1" top: "s2" }
layer { name: "sum" type: "Eltwise" bottom: "s1" bottom: "s2" top: "y" }
'''


def test_activation_memory_counts_each_buffer_once_per_batch(tmp_path, capsys):
    from compiler.accounting import inference_peak_bytes
    from compiler.backends.summary import summarize
    path = write(tmp_path, "cr.prototxt", CONV_RELU)
    net = netdef.parse(path)
    rows, totals = summarize(net)
    one = 2 * 4 * 8 * 8 * 4                         # a 2x4x8x8 float32 blob: the batch of 2
    assert {r["name"]: r["memory"] for r in rows} == {"data": 2 * 64 * 4, "c": one, "r": 0, "s": 0, "sum": one}
    assert totals["memory"] == 2 * 64 * 4 + 2 * one and totals["batch"] == 2
    assert inference_peak_bytes(net) == 2 * one      # c (read by sum) and y, the input excluded
    # The budget counts the same: it fits exactly what the buffers need.
    need = totals["memory"] + 4 * (4 + 4)            # + the weight and the bias
    assert netdef.parse(path, max_memory=need).layers
    with pytest.raises(NetdefError):
        netdef.parse(path, max_memory=need - 1)
    assert main(["summary", str(path)]) == 0
    assert "activations per batch of 2 (inference peak 4.0 KiB)" in capsys.readouterr().out


# ---- draw ----

needs_dot = pytest.mark.skipif(__import__("shutil").which("dot") is None,
                               reason="Graphviz's dot is not installed (.ci/run installs it)")


def _named(name, net_name="n"):
    return ('name: "%s"\nlayer { name: "%s" type: "Input" top: "d" input_param { shape { dim: 1 } } }\n'
            'layer { name: "r" type: "ReLU" bottom: "d" top: "e" }\n' % (net_name, name))


@needs_dot
@pytest.mark.parametrize("name", ["x\ufffey", "L" * 20000])
def test_draw_pictures_names_graphviz_would_refuse(tmp_path, capsys, name):
    path = tmp_path / "n.prototxt"
    path.write_text(_named(name), encoding="utf-8")
    code, out, err = run_cli(["draw", path, "-o", tmp_path / "n.svg"], capsys)
    assert code == 0, err
    assert "<svg" in (tmp_path / "n.svg").read_text(encoding="utf-8")


@needs_dot
def test_a_net_named_with_the_pages_data_marker_draws_its_data(tmp_path, capsys):
    import json
    import re
    path = write(tmp_path, "n.prototxt", _named("a", net_name="/*NETDEF_DATA*/ <!--SVG_BLOCKS-->"))
    code, out, err = run_cli(["draw", path, "-o", tmp_path / "n.html"], capsys)
    assert code == 0, err
    page = (tmp_path / "n.html").read_text(encoding="utf-8")
    data = re.search(r'<script id="netdata" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["net"] == "/*NETDEF_DATA*/ <!--SVG_BLOCKS-->"


def test_a_dot_that_prints_nothing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ncat > /dev/null\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (fake.parent, __import__("os").environ["PATH"]))
    path = write(tmp_path, "n.prototxt", _named("a"))
    for suffix in ("svg", "html"):
        code, out, err = run_cli(["draw", path, "-o", tmp_path / ("n." + suffix)], capsys)
        assert code == 1 and "printed nothing" in err and "Traceback" not in err, err
        assert not (tmp_path / ("n." + suffix)).exists()



def test_control_characters_in_names_are_printed_escaped(tmp_path, capsys):
    """A layer or blob name may hold anything; the terminal must not obey it."""
    path = write(tmp_path, "ctl.prototxt", 'layer { name: "\\033[2Jx" type: "ReLU" bottom: "\\033]0;t\\007" top: "y" }\n'
                 'layer { name: "\\033[2Jx" type: "ReLU" bottom: "y" top: "z" }\n')
    code, out, err = run_cli(["check", path], capsys)
    assert code == 1 and "layer '\\x1b[2Jx': unknown bottom blob '\\x1b]0;t\\x07'" in err
    assert "warning: %s: 2 layers named '\\x1b[2Jx'" % path in err
    assert not any(c in err for c in "\x1b\x07")
    # and in the tables summary and compile print
    path = write(tmp_path, "ctl2.prototxt", 'layer { name: "\\033[31mx" type: "Input" top: "d" '
                 'input_param { shape { dim: 1 } } }\n')
    for command in ("summary", "compile"):
        code, out, err = run_cli([command, path], capsys)
        assert code == 0 and "\\x1b[31mx" in out and "\x1b" not in out, command


def test_max_memory_bounds_the_weights_a_saved_net_holds_too(tmp_path, capsys, monkeypatch):
    """--max-memory is the budget of everything the command reads: a .netdef whose weights
    entry declares more (here a layer of 4.8 MB the net does not even use) is refused
    before it is inflated, as $NETDEF_MAX_MEMORY refuses it (it once used the default)."""
    import zipfile
    from compiler.backends.caffemodel import caffemodel_chunks
    from compiler.frontends import saved
    from tests.nets import inputs, layer, parse_text
    monkeypatch.setenv("NETDEF_MAX_MEMORY", "16G")        # the default, whatever the shell says
    tiny = inputs(data=(1, 4)) + layer("ip", "InnerProduct", ["data"], "inner_product_param { num_output: 2 }")
    big = tiny + layer("extra", "InnerProduct", ["data"], "inner_product_param { num_output: 300000 }")
    blobs = {"ip": [np.ones((2, 4), np.float32), np.ones(2, np.float32)],
             "extra": [np.ones((300000, 4), np.float32), np.ones(300000, np.float32)]}
    path = tmp_path / "w.netdef"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(saved.FORMAT_ENTRY, saved.FORMAT_STAMP)
        z.writestr(saved.NET_ENTRY, tiny)
        z.writestr(saved.WEIGHTS_ENTRY, b"".join(caffemodel_chunks(parse_text(big), blobs)))
    (tmp_path / "tiny.prototxt").write_text(tiny)
    assert main(["check", str(tmp_path / "tiny.prototxt"), "--weights", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "tiny.prototxt"), "--weights", str(path), "--max-memory", "1M"]) == 1
    assert "over the 1.0 MiB memory budget" in capsys.readouterr().err
    assert os.environ["NETDEF_MAX_MEMORY"] == "16G"          # the command's budget ended with it

"""Issue 9's hardening: Caffe's odd-but-legal nets (duplicate layer names), nets that
compile to nothing or have too many axes, hostile archives, weights files and special
files, shapes that do not fit an InnerProduct, format versions, and start-up cost."""
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

"""Weights in and out: .caffemodel import (V2 and V1), strict matching, and export.

Round trip: a caffemodel loaded into a module and exported again holds byte-identical
blobs, and the exported file is a NetParameter that protobuf (so Caffe) reads, with each
layer's parameters intact.
"""
import json

import numpy as np
import pytest
import torch

import netdef
from compiler.backends.caffemodel import caffemodel_chunks
from compiler.backends.prototxt import net_to_proto
from compiler.backends.torch_weights import module_blobs
from compiler.frontends.caffemodel import read_caffemodel
from compiler.proto import caffe_pb2
from netdef.api import load_weights
from netdef.cli import main
from tests.conftest import GOLDEN, needs_shared, shared_tool
from tests.nets import HEADER, parse_text

NET = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
'''
SHAPES = {"conv1": [(4, 3, 3, 3), (4,)], "fc": [(5, 144), (5,)]}


def arrays(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    return {name: [rng.standard_normal(s).astype(np.float32) for s in blob_shapes]
            for name, blob_shapes in shapes.items()}


def write(path, net, blobs):
    with open(path, "wb") as f:
        for chunk in caffemodel_chunks(net, blobs):
            f.write(chunk)


def file_blobs(path):
    return {fl.name: fl.blobs for fl in read_caffemodel(path) if fl.blobs}


def assert_same_bytes(a, b):
    assert list(a) == list(b)
    for name in a:
        assert len(a[name]) == len(b[name]), name
        for x, y in zip(a[name], b[name]):
            assert x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


def case_net(case_dir):
    case = json.loads((case_dir / "case.json").read_text())
    inputs = np.load(case_dir / "input.npz")
    net = netdef.parse(case_dir / case["prototxt"], phase=case.get("phase", "TEST"),
                       input_shapes={k: inputs[k].shape for k in inputs.files})
    return case, net


def check_round_trip(net, weights_path, tmp_path):
    gm = netdef.compile_net(net, weights_path)
    out = tmp_path / "out.caffemodel"
    netdef.export(gm, out, tmp_path / "out.prototxt")
    # Every blob of the source file comes back byte for byte (V1 legacy dims become the
    # net's own shapes, as Caffe's upgrade writes them).
    shapes = {name: [a.shape for a in arrays] for name, arrays in module_blobs(net, gm).items()}
    source = {name: [b.reshape(shape) for b, shape in zip(blobs, shapes[name])]
              for name, blobs in file_blobs(weights_path).items()}
    assert_same_bytes(source, file_blobs(out))
    # The file is a valid NetParameter whose layers are the net's, blobs aside.
    proto = caffe_pb2.NetParameter.FromString(out.read_bytes())
    want = net_to_proto(net)
    assert [l.name for l in proto.layer] == [l.name for l in want.layer]
    for got, expected in zip(proto.layer, want.layer):
        got_param = caffe_pb2.LayerParameter()
        got_param.CopyFrom(got)
        del got_param.blobs[:]
        assert got_param == expected, got.name
    # And it loads again, strictly, into the net read back from the exported prototxt.
    again = netdef.load(tmp_path / "out.prototxt", weights=out)
    assert_same_bytes(module_blobs(net, gm), module_blobs(netdef.record(again).net, again))


def layer_cases():
    folder = GOLDEN / "layers"
    return sorted(p.name for p in folder.iterdir() if (p / "weights.caffemodel").exists()) \
        if folder.is_dir() else []


@needs_shared
@pytest.mark.parametrize("name", layer_cases())
def test_golden_layer_weights_import_and_round_trip(name, tmp_path):
    case_dir = GOLDEN / "layers" / name
    case, net = case_net(case_dir)
    gm = netdef.compile_net(net, case_dir / "weights.caffemodel")
    recipe = shared_tool("caffe_weights").recipe_arrays(case["params"])
    loaded = module_blobs(net, gm)
    assert set(loaded) == set(recipe)
    for layer, blobs in recipe.items():
        assert len(loaded[layer]) == len(blobs)
        for got, want in zip(loaded[layer], blobs):
            np.testing.assert_array_equal(got, want.reshape(got.shape))
    check_round_trip(net, case_dir / "weights.caffemodel", tmp_path)


# Nets with recipe weights small enough for the unit tests (ResNet-50's file is 100 MB);
# mnist_siamese shares weights through param { name }.
ROUND_TRIP_NETS = ["mnist_lenet", "mnist_siamese", "cifar10_full", "bvlc_googlenet", "resnet50"]


@needs_shared
@pytest.mark.parametrize("name", ROUND_TRIP_NETS)
def test_golden_net_recipe_weights_round_trip(name, tmp_path):
    case, net = case_net(GOLDEN / "nets" / name)
    weights = tmp_path / "recipe.caffemodel"
    weights.write_bytes(shared_tool("caffe_weights").caffemodel_bytes(case["params"]))
    check_round_trip(net, weights, tmp_path)


V1_NET = '''name: "v1"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 6 input_dim: 6
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
         blobs_lr: 1 blobs_lr: 2 convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "ip" type: INNER_PRODUCT bottom: "conv" top: "ip" inner_product_param { num_output: 5 } }
'''


def v1_caffemodel(blobs):
    """A V1 NetParameter (`layers`, V1LayerParameter) whose blobs use only the legacy
    num/channels/height/width dims, as caffemodels written before 2015 do: a 2-D weight is
    1x1xNxK, a bias 1x1x1xN."""
    proto = caffe_pb2.NetParameter(name="v1")
    types = {"conv": caffe_pb2.V1LayerParameter.CONVOLUTION, "relu": caffe_pb2.V1LayerParameter.RELU,
             "ip": caffe_pb2.V1LayerParameter.INNER_PRODUCT}
    for name, ltype in types.items():
        layer = proto.layers.add(name=name, type=ltype)
        for arr in blobs.get(name, []):
            dims = (1,) * (4 - arr.ndim) + arr.shape
            blob = layer.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
            blob.data.extend(arr.ravel().tolist())
    return proto.SerializeToString()


def test_v1_caffemodel_with_legacy_dims_imports_and_round_trips(tmp_path):
    blobs = arrays({"conv": [(4, 3, 3, 3), (4,)], "ip": [(5, 64), (5,)]})
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(v1_caffemodel(blobs))
    read = {fl.name: fl for fl in read_caffemodel(path)}
    assert read["ip"].type == "InnerProduct" and read["ip"].blobs[0].shape == (1, 1, 5, 64)
    assert read["ip"].legacy == [True, True]
    net = parse_text(V1_NET)
    gm = netdef.compile_net(net, path)
    assert_same_bytes(module_blobs(net, gm), blobs)
    check_round_trip(net, path, tmp_path)


def test_legacy_dims_that_do_not_fit_are_refused(tmp_path):
    blobs = arrays({"conv": [(4, 3, 3, 3), (4,)], "ip": [(5, 64), (5,)]})
    blobs["ip"][0] = blobs["ip"][0].reshape(5, 8, 8)        # 1x5x8x8: same count, other shape
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(v1_caffemodel(blobs))
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(parse_text(V1_NET), path)
    assert "ip blob 0 (weight): [1, 5, 8, 8] in the file, [5, 64] expected" in str(e.value)


# Strict matching: every problem is named, strict=False loads what matches.

def test_missing_layer_is_named(tmp_path):
    blobs = arrays()
    del blobs["fc"]
    path = tmp_path / "w.caffemodel"
    write(path, parse_text(NET), blobs)
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(parse_text(NET), path)
    assert "no blobs in the file for 'fc'" in str(e.value) and "conv1" not in str(e.value)
    assert e.value.file == str(path)


def test_extra_layer_is_named(tmp_path):
    blobs = dict(arrays(), fc_old=[np.zeros((5, 144), np.float32)])
    path = tmp_path / "w.caffemodel"
    net = parse_text(NET)
    with open(path, "wb") as f:
        for chunk in caffemodel_chunks(net, blobs):
            f.write(chunk)
        # caffemodel_chunks writes the net's layers only; add one the net lacks.
        extra = caffe_pb2.NetParameter()
        extra.layer.add(name="fc_old", type="InnerProduct").blobs.add().shape.dim.extend([5, 144])
        extra.layer[0].blobs[0].data.extend([0.0] * 720)
        f.write(extra.SerializeToString())
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(parse_text(NET), path)
    assert "layers in the file but not in the net: 'fc_old'" in str(e.value)


def test_wrong_shape_and_wrong_count_are_named(tmp_path):
    blobs = arrays()
    blobs["conv1"][0] = np.zeros((4, 3, 5, 5), np.float32)
    blobs["fc"] = blobs["fc"][:1]
    path = tmp_path / "w.caffemodel"
    write(path, parse_text(NET), blobs)
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(parse_text(NET), path)
    text = str(e.value)
    assert "conv1 blob 0 (weight): [4, 3, 5, 5] in the file, [4, 3, 3, 3] expected" in text
    assert "fc: 1 blobs in the file, 2 expected" in text


def test_not_strict_loads_what_matches(tmp_path):
    blobs = arrays()
    blobs["conv1"][0] = np.zeros((4, 3, 5, 5), np.float32)
    del blobs["fc"]
    path = tmp_path / "w.caffemodel"
    write(path, parse_text(NET), blobs)
    net = parse_text(NET)
    gm = netdef.compile_net(net)
    # module_blobs gives views of the module's tensors: copy them to compare later.
    fresh = {k: [a.copy() for a in v] for k, v in module_blobs(net, gm).items()}
    report = load_weights(net, gm, path, strict=False)
    assert report["missing"] == ["fc"] and report["extra"] == []
    assert report["mismatched"] == ["conv1 blob 0 (weight): [4, 3, 5, 5] in the file, [4, 3, 3, 3] expected"]
    loaded = module_blobs(net, gm)
    # Blob by blob: conv1's bias fits and is loaded; its weight and fc keep their values.
    assert_same_bytes({"b": loaded["conv1"][1:]}, {"b": blobs["conv1"][1:]})
    assert_same_bytes({"w": loaded["conv1"][:1], "fc": loaded["fc"]}, {"w": fresh["conv1"][:1], "fc": fresh["fc"]})


def test_cli_no_strict_and_export(tmp_path, capsys):
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(NET)
    blobs = arrays()
    del blobs["fc"]
    weights = tmp_path / "w.caffemodel"
    write(weights, parse_text(NET), blobs)
    out = tmp_path / "out.caffemodel"
    assert main(["compile", str(prototxt), "--weights", str(weights), "--export-caffemodel", str(out)]) == 1
    assert "'fc'" in capsys.readouterr().err and not out.exists()
    assert main(["compile", str(prototxt), "--weights", str(weights), "--no-strict",
                 "--export-caffemodel", str(out), "--export-prototxt", str(tmp_path / "out.prototxt")]) == 0
    model = netdef.load(tmp_path / "out.prototxt", weights=out)
    assert_same_bytes({"conv1": module_blobs(netdef.record(model).net, model)["conv1"]}, {"conv1": blobs["conv1"]})


def test_export_of_a_module_moved_to_float64_writes_float32(tmp_path):
    net = parse_text(NET)
    gm = netdef.compile_net(net, arrays()).to(torch.float64)
    netdef.export(gm, tmp_path / "w.caffemodel")
    assert_same_bytes(file_blobs(tmp_path / "w.caffemodel"), arrays())

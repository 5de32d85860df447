"""Weights in and out: .caffemodel import (V2 and V1), matching as Caffe does, and export.

Round trip: a caffemodel loaded into a module and exported again holds byte-identical
blobs, and the exported file is a NetParameter that protobuf (so Caffe) reads, with each
layer's parameters intact.
"""
import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import netdef
from compiler.backends.caffemodel import caffemodel_chunks
from compiler.backends.prototxt import net_to_proto
from compiler.backends.torch_weights import module_blobs
from compiler.frontends.caffemodel import read_caffemodel
from compiler.passes.weights import net_blob_shapes
from compiler.proto import caffe_pb2
from netdef import NetdefWarning
from netdef.cli import main
from tests.conftest import GOLDEN, needs_shared, shared_tool
from tests.nets import CONV_FC, CONV_RELU_FC, HEADER, inputs, layer, parse_text, randn

ZOO = Path(__file__).resolve().parent.parent / "zoo_defs"

NET = CONV_RELU_FC
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
    assert e.value.message == "blob 0 (weight) is 1x5x8x8 in %s, the net's is 5x64" % path


# Matching as Caffe's Net::CopyTrainedLayersFrom, on files shaped like published ones.

def blobs_for(net, seed=0):
    """Random blobs of the net's own shapes for every layer that has some."""
    rng = np.random.default_rng(seed)
    return {layer.name: [rng.standard_normal(s).astype(np.float32) for s in shapes]
            for layer in net.layers for shapes in [net_blob_shapes(net, layer)] if shapes}


def loaded(net, weights, **kw):
    """Compile `net` with `weights`: (module, [warning lines])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = netdef.compile_net(net, weights, **kw)
    assert all(issubclass(w.category, NetdefWarning) for w in caught)
    return gm, [str(w.message) for w in caught]


def cli(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err.splitlines()


# MTCNN's det2 (RNet) as published: the deploy prototxt drops the landmark head conv5-3
# that det2.caffemodel, saved from the training net, still holds.
DET2 = '''name: "RNet"
input: "data"
input_shape { dim: 1 dim: 3 dim: 24 dim: 24 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 28 kernel_size: 3 } }
layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 48 kernel_size: 3 } }
layer { name: "prelu2" type: "PReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3" convolution_param { num_output: 64 kernel_size: 2 } }
layer { name: "prelu3" type: "PReLU" bottom: "conv3" top: "conv3" }
layer { name: "conv4" type: "InnerProduct" bottom: "conv3" top: "conv4" inner_product_param { num_output: 128 } }
layer { name: "prelu4" type: "PReLU" bottom: "conv4" top: "conv4" }
layer { name: "conv5-1" type: "InnerProduct" bottom: "conv4" top: "conv5-1" inner_product_param { num_output: 2 } }
layer { name: "conv5-2" type: "InnerProduct" bottom: "conv4" top: "conv5-2" inner_product_param { num_output: 4 } }
layer { name: "prob1" type: "Softmax" bottom: "conv5-1" top: "prob1" }
'''
DET2_LANDMARKS = '''
layer { name: "conv5-3" type: "InnerProduct" bottom: "conv4" top: "conv5-3" inner_product_param { num_output: 10 } }
'''


@pytest.fixture
def det2(tmp_path):
    """(deploy net, det2.caffemodel path, the file's blobs)"""
    trained = parse_text(DET2 + DET2_LANDMARKS)
    blobs = blobs_for(trained)
    path = tmp_path / "det2.caffemodel"
    write(path, trained, blobs)
    return parse_text(DET2), path, blobs


def test_a_deploy_net_loads_a_file_with_an_extra_head(det2):
    net, path, blobs = det2
    gm, lines = loaded(net, path)
    # Named once, and not taken for a renaming: no layer of the net lacks weights.
    assert lines == ["%s: ignoring conv5-3: not in the net" % path]
    del blobs["conv5-3"]
    assert_same_bytes(module_blobs(net, gm), blobs)


def test_strict_refuses_the_extra_head(det2):
    net, path, _ = det2
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(net, path, strict=True)
    assert [(x.file, x.layer, x.message) for x in e.value.errors] == [
        (str(path), "conv5-3", "a layer of the weights that is not in the net")]


def test_cli_reports_the_ignored_head_in_one_line_and_strict_fails(det2, tmp_path, capsys):
    _, path, _ = det2
    proto = tmp_path / "det2.prototxt"
    proto.write_text(DET2)
    rc, _, err = cli(["compile", proto, "--weights", path], capsys)
    assert rc == 0 and err == ["warning: %s: ignoring conv5-3: not in the net" % path]
    rc, _, err = cli(["compile", proto, "--weights", path, "--strict"], capsys)
    assert rc == 1 and err[0] == "error: %s: layer 'conv5-3': a layer of the weights that is not in the net" % path
    # --no-strict was the way to load such files; it stays, deprecated, meaning the default.
    rc, _, err = cli(["compile", proto, "--weights", path, "--no-strict"], capsys)
    assert rc == 0 and err == ["warning: --no-strict is deprecated: it is the default now, and will be removed",
                               "warning: %s: ignoring conv5-3: not in the net" % path]


# GoogLeNet's published caffemodel is its training net's: besides the data and loss layers
# it holds the auxiliary classifiers loss1/* (and loss2/*) that the deploy net drops.
GOOGLENET_BODY = '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "inception_3a/1x1" type: "Convolution" bottom: "pool1" top: "inception_3a/1x1" convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "inception_3a/3x3" type: "Convolution" bottom: "pool1" top: "inception_3a/3x3" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "inception_3a/output" type: "Concat" bottom: "inception_3a/1x1" bottom: "inception_3a/3x3" top: "inception_3a/output" }
'''
GOOGLENET_AUX = '''
layer { name: "loss1/ave_pool" type: "Pooling" bottom: "inception_3a/output" top: "loss1/ave_pool" pooling_param { pool: AVE kernel_size: 4 stride: 2 } }
layer { name: "loss1/conv" type: "Convolution" bottom: "loss1/ave_pool" top: "loss1/conv" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "loss1/fc" type: "InnerProduct" bottom: "loss1/conv" top: "loss1/fc" inner_product_param { num_output: 16 } }
layer { name: "loss1/classifier" type: "InnerProduct" bottom: "loss1/fc" top: "loss1/classifier" inner_product_param { num_output: 10 } }
layer { name: "loss1/loss" type: "SoftmaxWithLoss" bottom: "loss1/classifier" bottom: "label" top: "loss1/loss1" loss_weight: 0.3 }
'''
GOOGLENET_HEAD = '''
layer { name: "pool5/7x7_s1" type: "Pooling" bottom: "inception_3a/output" top: "pool5/7x7_s1" pooling_param { pool: AVE global_pooling: true } }
layer { name: "loss3/classifier" type: "InnerProduct" bottom: "pool5/7x7_s1" top: "loss3/classifier" inner_product_param { num_output: 10 } }
'''
GOOGLENET_TRAIN = ('name: "GoogleNet"\n' + inputs(data=(2, 3, 16, 16), label=(2,)) + GOOGLENET_BODY + GOOGLENET_AUX
                   + GOOGLENET_HEAD + 'layer { name: "loss3/loss3" type: "SoftmaxWithLoss" bottom: "loss3/classifier" '
                   'bottom: "label" top: "loss3/loss3" }\n')
GOOGLENET_DEPLOY = ('name: "GoogleNet"\n' + inputs(data=(1, 3, 16, 16)) + GOOGLENET_BODY + GOOGLENET_HEAD
                    + 'layer { name: "prob" type: "Softmax" bottom: "loss3/classifier" top: "prob" }\n')


def test_googlenet_train_caffemodel_loads_into_the_deploy_net(tmp_path):
    trained = parse_text(GOOGLENET_TRAIN, phase="TRAIN")
    blobs = blobs_for(trained)
    path = tmp_path / "bvlc_googlenet.caffemodel"
    write(path, trained, blobs)
    net = parse_text(GOOGLENET_DEPLOY)
    gm, lines = loaded(net, path)
    # The data and loss layers have no blobs: skipping them loses nothing, not worth a word.
    assert lines == ["%s: ignoring loss1/conv, loss1/fc, loss1/classifier: not in the net" % path]
    deploy_blobs = {k: v for k, v in blobs.items() if not k.startswith("loss1/")}
    assert_same_bytes(module_blobs(net, gm), deploy_blobs)
    x = torch.from_numpy(randn(1, 3, 16, 16))
    torch.testing.assert_close(gm(x)["prob"], netdef.compile_net(net, deploy_blobs)(x)["prob"])


# Fine-tuning (Caffe's flickr_style example): the net renames the classifier so that it
# learns from scratch while the rest starts from the file.
FINETUNE = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc7" type: "InnerProduct" bottom: "conv1" top: "fc7" inner_product_param { num_output: 16 } }
layer { name: "%s" type: "InnerProduct" bottom: "fc7" top: "%s" inner_product_param { num_output: %d } }
'''


def finetune(tmp_path, classes):
    """The net with fc8_flickr of `classes` outputs, and a file trained with fc8 of 10."""
    path = tmp_path / "trained.caffemodel"
    trained = parse_text(FINETUNE % ("fc8", "fc8", 10))
    write(path, trained, blobs_for(trained))
    return parse_text(FINETUNE % ("fc8_flickr", "fc8_flickr", classes)), path


def test_a_renamed_classifier_of_the_same_shape_is_recognised(tmp_path):
    net, path = finetune(tmp_path, 10)
    _, lines = loaded(net, path)
    assert lines == ["%s: the file's fc8 has the shape of the net's fc8_flickr: fine-tuning? "
                     "fc8_flickr keeps its fillers" % path]
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(net, path, strict=True)
    assert [(x.line, x.layer, x.message) for x in e.value.errors] == [
        (10, "fc8_flickr", "%s has no weights for this layer; the file's fc8 has its shapes: fine-tuning?" % path),
        (None, "fc8", "a layer of the weights that is not in the net: it has the shapes of the net's fc8_flickr")]


def test_a_renamed_classifier_of_another_shape_is_not_taken_for_a_renaming(tmp_path):
    net, path = finetune(tmp_path, 20)
    gm, lines = loaded(net, path)
    assert lines == ["%s: ignoring fc8: not in the net" % path,
                     "%s: no weights for fc8_flickr: it keeps its filler values" % path]
    assert set(module_blobs(net, gm)) == {"conv1", "fc7", "fc8_flickr"}


def test_layers_the_weights_lack_keep_their_fillers_and_are_named():
    net = parse_text(NET)
    torch.manual_seed(0)
    fillers = module_blobs(net, netdef.compile_net(net))
    blobs = arrays()
    torch.manual_seed(0)
    gm, lines = loaded(net, {"conv1": blobs["conv1"]})
    assert lines == ["the weights dict: no weights for fc: it keeps its filler values"]
    assert_same_bytes(module_blobs(net, gm), {"conv1": blobs["conv1"], "fc": fillers["fc"]})
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(net, {"conv1": blobs["conv1"]}, strict=True)
    assert (e.value.line, e.value.layer) == (10, "fc")


def test_a_file_that_fills_no_layer_is_an_error(det2, tmp_path, capsys):
    _, path, _ = det2          # MTCNN's weights for a net that has none of its layer names
    with pytest.raises(netdef.NetdefError) as e:
        netdef.compile_net(parse_text(CONV_FC), path)
    assert (e.value.file, e.value.message) == (str(path), (
        "%s fills no layer of the net: its layers with weights (conv1, prelu1, conv2, prelu2, conv3, prelu3, "
        "conv4, prelu4, conv5-1, conv5-2, conv5-3) have none of the names of the net's (conv, fc)" % path))
    proto = tmp_path / "net.prototxt"
    proto.write_text(CONV_FC)
    np.savez(tmp_path / "in.npz", data=randn(1, 3, 8, 8))
    rc, _, err = cli(["run", proto, "--weights", path, "--input", tmp_path / "in.npz",
                      "--output", tmp_path / "out.npz"], capsys)
    assert rc == 1 and "fills no layer of the net" in err[0] and not (tmp_path / "out.npz").exists()


def test_wrong_shapes_and_counts_are_errors_in_every_mode(tmp_path):
    blobs = arrays()
    blobs["conv1"][0] = np.zeros((4, 3, 5, 5), np.float32)
    blobs["fc"] = blobs["fc"][:1]
    path = tmp_path / "w.caffemodel"
    write(path, parse_text(NET), blobs)
    for strict in (False, True):
        with pytest.raises(netdef.NetdefError) as e:
            netdef.compile_net(parse_text(NET), path, strict=strict)
        assert [(x.line, x.layer, x.message) for x in e.value.errors] == [
            (8, "conv1", "blob 0 (weight) is 4x3x5x5 in %s, the net's is 4x3x3x3" % path),
            (10, "fc", "%s has 1 blobs for this layer (5x144), the net 2 (5x144, 5)" % path)]


def test_check_lists_the_layers_the_weights_lack_as_warnings(det2, tmp_path, capsys):
    net, path, _ = det2
    proto = tmp_path / "det2.prototxt"
    proto.write_text(DET2.replace('"conv5-2"', '"conv5-2b"'))
    rc, out, err = cli(["check", proto, "--weights", path], capsys)
    assert rc == 0 and "weights load with 3 warning(s)" in out
    assert err == ["warning: %s:15: layer 'conv5-2b': %s has no weights for this layer; the file's conv5-2 has "
                   "its shapes: fine-tuning?" % (proto, path),
                   "warning: %s: layer 'conv5-2': a layer of the weights that is not in the net: it has the "
                   "shapes of the net's conv5-2b" % path,
                   "warning: %s: layer 'conv5-3': a layer of the weights that is not in the net" % path]
    rc, out, _ = cli(["check", proto, "--weights", path, "--format", "json"], capsys)
    assert rc == 0 and [(p["layer"], p["severity"]) for p in json.loads(out)] == [
        ("conv5-2b", "warning"), ("conv5-2", "warning"), ("conv5-3", "warning")]
    assert cli(["check", proto, "--weights", path, "--strict"], capsys)[0] == 1


# A size the weights do not allow is the input's problem, not the weights'.

def test_an_input_of_another_size_is_reported_as_an_input_problem(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_text(CONV_FC)
    weights = tmp_path / "w.caffemodel"
    write(weights, parse_text(CONV_FC), blobs_for(parse_text(CONV_FC)))
    message = ("input 'data' 1x3x10x10 makes conv 1x4x8x8, so fc needs a 5x256 weight; the weights have 5x144: "
               "feed 8x8")
    with pytest.raises(netdef.NetdefError) as e:
        netdef.load(proto, weights, input_shapes={"data": (1, 3, 10, 10)})
    assert (e.value.file, e.value.line, e.value.message) == (str(proto), 2, message)
    np.savez(tmp_path / "in.npz", data=randn(1, 3, 10, 10))
    rc, _, err = cli(["run", proto, "--weights", weights, "--input", tmp_path / "in.npz",
                      "--output", tmp_path / "out.npz"], capsys)
    assert rc == 1 and err[0] == "error: %s:2: %s" % (proto, message)
    # A 1-channel image: the first convolution's weights say how many channels to feed.
    with pytest.raises(netdef.NetdefError) as e:
        netdef.load(proto, weights, input_shapes={"data": (1, 1, 8, 8)})
    assert e.value.message == ("input 'data' 1x1x8x8 gives conv a 4x1x3x3 weight; the weights have 4x3x3x3: "
                               "feed 3 channels")


def test_resnet50_at_256_is_told_to_feed_224(tmp_path, capsys):
    weights = tmp_path / "fc1000.caffemodel"
    classifier = parse_text(inputs(pool5=(1, 2048, 1, 1)) + layer("fc1000", "InnerProduct", ["pool5"],
                                                                   "inner_product_param { num_output: 1000 }"))
    write(weights, classifier, {"fc1000": [np.zeros((1000, 2048), np.float32), np.zeros(1000, np.float32)]})
    deploy = ZOO / "ResNet-50-deploy.prototxt"
    rc, _, err = cli(["check", deploy, "--weights", weights, "--input-shape", "data=1,3,256,256"], capsys)
    assert rc == 1 and err[0] == (
        "error: %s:3: input 'data' 1x3x256x256 makes pool5 1x2048x2x2, so fc1000 needs a 1000x8192 weight; "
        "the weights have 1000x2048: feed 224x224" % deploy)
    # A prototxt that declares 256x256 itself: the sizes that give a 1x1 pool5.
    at256 = tmp_path / "resnet50-256.prototxt"
    at256.write_text(deploy.read_text().replace("dim: 224", "dim: 256"))
    rc, _, err = cli(["check", at256, "--weights", weights], capsys)
    assert rc == 1 and err[0].endswith("the weights have 1000x2048: feed 195x195 to 226x226")


# What loading did is in the module's record, and run says when there is nothing to load.

def test_the_record_says_what_loading_did(det2):
    net, path, _ = det2
    gm, _ = loaded(net, path)
    report = netdef.record(gm).weights
    assert report.file == str(path) and report.ignored == ("conv5-3",) and report.kept_fillers == ()
    assert report.loaded == ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4",
                             "conv5-1", "conv5-2")
    assert netdef.record(copy.deepcopy(gm)).weights == report
    # The fast path builds another module: its record still says what came from the file.
    fast, _ = loaded(net, path, fast=True)
    assert netdef.record(fast).weights == report
    assert netdef.record(netdef.compile_net(net)).weights is None


def test_run_without_weights_says_it_runs_on_fillers(tmp_path, capsys):
    proto = tmp_path / "net.prototxt"
    proto.write_text(CONV_FC)
    np.savez(tmp_path / "in.npz", data=randn(1, 3, 8, 8))
    args = ["--input", tmp_path / "in.npz", "--output", tmp_path / "out.npz"]
    rc, _, err = cli(["run", proto] + args, capsys)
    assert rc == 0 and err == ["warning: no --weights: %s runs on its filler values" % proto]
    # A saved .netdef brings its weights: nothing to say, and the outputs are the saved module's.
    saved = tmp_path / "net.netdef"
    gm = netdef.compile_net(parse_text(CONV_FC), blobs_for(parse_text(CONV_FC)))
    netdef.save(gm, saved)
    rc, _, err = cli(["run", saved] + args, capsys)
    assert rc == 0 and err == []
    with np.load(tmp_path / "out.npz") as z:
        np.testing.assert_allclose(z["fc"], gm(torch.from_numpy(randn(1, 3, 8, 8)))["fc"].detach().numpy(),
                                   rtol=1e-6)


def test_export_of_a_module_moved_to_float64_writes_float32(tmp_path):
    net = parse_text(NET)
    gm = netdef.compile_net(net, arrays()).to(torch.float64)
    netdef.export(gm, tmp_path / "w.caffemodel")
    assert_same_bytes(file_blobs(tmp_path / "w.caffemodel"), arrays())


def test_a_later_layer_of_a_repeated_name_is_reported_as_keeping_its_fillers():
    """Caffe copies a file's layer into the net's first layer of its name; a later one of
    that name keeps its fillers whatever the file holds, and the report says so. A file
    matching nothing is an error even when the only weighted layer is such a later one."""
    from compiler.ir import LayerBlobs
    from compiler.passes.weights import match_weights
    text = inputs(data=(1, 4)) + layer("x", "ReLU", ["data"], tops=["r"]) + \
        layer("x", "InnerProduct", ["r"], "inner_product_param { num_output: 2 }", tops=["ip"])
    with pytest.warns(NetdefWarning, match="2 layers named 'x'"):
        net = parse_text(text)
    with pytest.raises(netdef.NetdefError, match="fills no layer of the net"):
        match_weights(net, [LayerBlobs("zzz", "InnerProduct", [np.zeros((2, 4), np.float32)], [False])], "w")
    with pytest.warns(NetdefWarning):
        net = parse_text(text + layer("y", "InnerProduct", ["ip"], "inner_product_param { num_output: 2 "
                                                                    "bias_term: false }"))
    _, report = match_weights(net, [LayerBlobs("y", "InnerProduct", [np.zeros((2, 2), np.float32)], [False])], "w")
    assert report.loaded == ("y",) and report.kept_fillers == ("x#2",)
    problem, = report.problems(net)
    assert (problem.layer, problem.line) == ("x", 3) and "weights load into the first one" in problem.message

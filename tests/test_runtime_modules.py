"""The modules a net lowers to are plain PyTorch: every one rebuilds from
constructor_args() and its state_dict, a compiled module survives torch.save / torch.load,
and an SSD net exports to ONNX up to its DetectionOutput, which refuses export by name.

Four small nets together use every runtime module class of compiler/runtime (a test
checks that, so a new class must join them).
"""
import copy
import importlib
import io
import pkgutil

import pytest
import torch
import torch.nn as nn

import compiler.runtime
import netdef
from compiler.layers.base import constructor_args
from netdef.api import load_weights
from tests.nets import inputs, layer, parse_text

VISION = inputs(data=(2, 3, 8, 8)) + "".join([
    layer("conv", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }"),
    layer("bn", "BatchNorm", ["conv"]),
    layer("sc", "Scale", ["bn"], "scale_param { bias_term: true }"),
    layer("relu", "ReLU", ["sc"], tops=["sc"]),
    layer("leaky", "ReLU", ["sc"], "relu_param { negative_slope: 0.1 }"),
    layer("prelu", "PReLU", ["leaky"]),
    layer("elu", "ELU", ["prelu"]),
    layer("pool", "Pooling", ["elu"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
    layer("ave", "Pooling", ["pool"], "pooling_param { pool: AVE kernel_size: 3 pad: 1 }"),
    layer("lrn", "LRN", ["ave"], "lrn_param { local_size: 3 }"),
    layer("mvn", "MVN", ["lrn"]),
    layer("deconv", "Deconvolution", ["mvn"],
          "convolution_param { num_output: 3 kernel_size: 2 stride: 2 bias_term: false }"),
    layer("sig", "Sigmoid", ["deconv"]),
    layer("tanh", "TanH", ["deconv"]),
    layer("abs", "AbsVal", ["tanh"]),
    layer("bnll", "BNLL", ["abs"]),
    layer("power", "Power", ["sig"], "power_param { power: 2 scale: 0.5 shift: 1 }"),
    layer("exp", "Exp", ["power"], "exp_param { base: 2 scale: 0.5 }"),
    layer("log", "Log", ["exp"]),
    layer("threshold", "Threshold", ["tanh"], "threshold_param { threshold: 0.1 }"),
    layer("clip", "Clip", ["bnll"], "clip_param { min: 0.2 max: 0.8 }"),
    layer("swish", "Swish", ["clip"], "swish_param { beta: 1.5 }"),
    layer("drop", "Dropout", ["swish"]),
    layer("conv_a", "Convolution", ["data"], "convolution_param { num_output: 3 kernel_size: 1 }"),
    layer("conv_b", "Convolution", ["data"], "convolution_param { num_output: 3 kernel_size: 1 }"),
    layer("sum", "Eltwise", ["conv_a", "conv_b"]),
    layer("prod", "Eltwise", ["sum", "drop", "log"], "eltwise_param { operation: PROD }"),
    layer("max", "Eltwise", ["prod", "threshold"], "eltwise_param { operation: MAX }"),
    layer("weighted", "Eltwise", ["max", "sig"], "eltwise_param { coeff: 0.5 coeff: -2 }"),
    layer("concat", "Concat", ["weighted", "sig"]),
    layer("slice", "Slice", ["concat"], "slice_param { slice_point: 2 }", tops=["part1", "part2"]),
    layer("split", "Split", ["part2"], tops=["copy1", "copy2"]),
    layer("crop", "Crop", ["copy1", "pool"], "crop_param { offset: 1 }"),
    layer("flat", "Flatten", ["crop"]),
    layer("reshape", "Reshape", ["copy2"], "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }"),
    layer("tile", "Tile", ["reshape"], "tile_param { axis: 1 tiles: 2 }"),
    layer("softmax", "Softmax", ["tile"], "softmax_param { axis: 2 }"),
    layer("argmax", "ArgMax", ["softmax"], "argmax_param { axis: 2 top_k: 2 }"),
    layer("reduction", "Reduction", ["part1"], "reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 }"),
    layer("ip", "InnerProduct", ["flat"], "inner_product_param { num_output: 5 }"),
    layer("ipt", "InnerProduct", ["flat"], "inner_product_param { num_output: 5 transpose: true }"),
    layer("bias", "Bias", ["ip"]),
    layer("scale2", "Scale", ["bias", "ipt"], "scale_param { axis: 0 }"),
    layer("silence", "Silence", ["reduction"], tops=[]),
    layer("spp", "SPP", ["data"], "spp_param { pyramid_height: 2 pool: AVE }"),
    layer("im2col", "Im2col", ["data"], "convolution_param { kernel_size: 3 stride: 2 pad: 1 }"),
])

# An SSD head: 4 priors per position (min size, max size, ratio 2 and its flip) on a 3x3
# map, 3 classes.
SSD = inputs(data=(1, 3, 12, 12)) + "".join([
    layer("fmap", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 stride: 4 }"),
    layer("norm", "Normalize", ["fmap"], "norm_param { across_spatial: false channel_shared: false }"),
    layer("loc", "Convolution", ["norm"], "convolution_param { num_output: 16 kernel_size: 1 }"),
    layer("loc_perm", "Permute", ["loc"], "permute_param { order: 0 order: 2 order: 3 order: 1 }"),
    layer("loc_flat", "Flatten", ["loc_perm"]),
    layer("conf", "Convolution", ["norm"], "convolution_param { num_output: 12 kernel_size: 1 }"),
    layer("conf_perm", "Permute", ["conf"], "permute_param { order: 0 order: 2 order: 3 order: 1 }"),
    layer("conf_flat", "Flatten", ["conf_perm"]),
    layer("conf_shape", "Reshape", ["conf_flat"], "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }"),
    layer("conf_prob", "Softmax", ["conf_shape"], "softmax_param { axis: 2 }"),
    layer("conf_out", "Flatten", ["conf_prob"]),
    layer("prior", "PriorBox", ["norm", "data"],
          "prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 flip: true clip: true "
          "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }"),
    layer("det", "DetectionOutput", ["loc_flat", "conf_out", "prior"],
          "detection_output_param { num_classes: 3 share_location: true background_label_id: 0 "
          "nms_param { nms_threshold: 0.45 top_k: 20 } code_type: CENTER_SIZE keep_top_k: 10 "
          "confidence_threshold: 0.2 }"),
])
DETECTION_BOTTOMS = ["loc_flat", "conf_out", "prior"]

LOSSES = inputs(x=(4, 5), label=(4,), target=(4, 5), similar=(4,), infogain=(5, 5)) + "".join([
    layer("softmax_loss", "SoftmaxWithLoss", ["x", "label"], "loss_param { ignore_label: 2 }"),
    layer("euclidean", "EuclideanLoss", ["x", "target"]),
    layer("sigmoid_loss", "SigmoidCrossEntropyLoss", ["x", "target"]),
    layer("contrastive", "ContrastiveLoss", ["x", "target", "similar"],
          "contrastive_loss_param { margin: 2 }"),
    layer("accuracy", "Accuracy", ["x", "label"], "accuracy_param { top_k: 2 }", tops=["accuracy", "per_class"]),
    layer("hinge", "HingeLoss", ["x", "label"], "hinge_loss_param { norm: L2 }"),
    layer("multinomial", "MultinomialLogisticLoss", ["target", "label"]),
    layer("infogain", "InfogainLoss", ["x", "label", "infogain"], "loss_param { ignore_label: 2 }"),
    layer("embed", "Embed", ["label"], "embed_param { num_output: 3 input_dim: 5 }"),
    layer("reindex", "BatchReindex", ["x", "similar"]),
    layer("parameter", "Parameter", [], "parameter_param { shape { dim: 2 dim: 5 } }"),
])

# Recurrent layers: an RNN with a static input, an LSTM with exposed states, a step of
# LSTMUnit after them.
SEQUENCE = inputs(x=(3, 2, 4), cont=(3, 2), xs=(2, 3), h0=(1, 2, 5), c0=(1, 2, 5), cont0=(1, 2)) + "".join([
    layer("rnn", "RNN", ["x", "cont", "xs"], "recurrent_param { num_output: 4 }"),
    layer("lstm", "LSTM", ["rnn", "cont", "h0", "c0"], "recurrent_param { num_output: 5 expose_hidden: true }",
          tops=["lstm", "hT", "cT"]),
    layer("gates", "InnerProduct", ["hT"], "inner_product_param { num_output: 20 axis: 2 }"),
    layer("unit", "LSTMUnit", ["cT", "gates", "cont0"], tops=["c1", "h1"]),
])


def feeds(name):
    g = torch.Generator().manual_seed(1)
    if name == "LOSSES":
        return {"x": torch.randn(4, 5, generator=g), "label": torch.tensor([0.0, 2, 4, 1]),
                "target": torch.rand(4, 5, generator=g), "similar": torch.tensor([1.0, 0, 0, 1]),
                "infogain": torch.rand(5, 5, generator=g)}
    if name == "SEQUENCE":
        return {"x": torch.randn(3, 2, 4, generator=g), "cont": torch.tensor([[0.0, 0], [1, 0], [1, 1]]),
                "xs": torch.randn(2, 3, generator=g), "h0": torch.randn(1, 2, 5, generator=g),
                "c0": torch.randn(1, 2, 5, generator=g), "cont0": torch.tensor([[1.0, 0]])}
    return {"data": torch.randn((2, 3, 8, 8) if name == "VISION" else (1, 3, 12, 12), generator=g)}


def compiled(name, outputs=None):
    """The net, returning `outputs`, with random weights (BatchNorm's statistics valid: a
    factor of 1, variances positive) so that a rebuilt module computing anything else shows."""
    net = parse_text(globals()[name], phase="TRAIN" if name == "LOSSES" else "TEST")
    gm = netdef.compile_net(net, outputs=outputs)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in gm.state_dict().items():
            t.copy_(torch.rand(t.shape, generator=g) + 0.5 if key.endswith(("variance", "factor"))
                    else torch.randn(t.shape, generator=g) * 0.5)
        for m in gm.modules():
            if hasattr(m, "factor"):
                m.factor.fill_(1)
    return gm


def run(gm, name):
    with torch.no_grad():
        return gm(**feeds(name))


def is_plain(value):
    if isinstance(value, (tuple, list)):
        return all(is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def runtime_classes():
    """Every nn.Module class defined in compiler/runtime, but for the bases of others
    (CaffeRecurrent), which are used through them."""
    found = set()
    for info in pkgutil.iter_modules(compiler.runtime.__path__):
        module = importlib.import_module("compiler.runtime." + info.name)
        found |= {c for c in vars(module).values() if isinstance(c, type) and issubclass(c, nn.Module)
                  and c.__module__ == module.__name__}
    return {c for c in found if not any(c in other.__bases__ for other in found)}


NETS = ["VISION", "SSD", "LOSSES", "SEQUENCE"]


@pytest.mark.parametrize("name", NETS)
def test_every_module_rebuilds_from_its_constructor_args_and_state_dict(name):
    gm = compiled(name)
    rebuilt = copy.deepcopy(gm)
    for child, module in gm.named_children():
        args = constructor_args(module)
        assert is_plain(list(args.values())), (child, args)
        again = type(module)(**args)
        again.load_state_dict(module.state_dict())
        setattr(rebuilt, child, again.train(module.training))
    want, got = run(gm, name), run(rebuilt, name)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_the_nets_use_every_runtime_module_class():
    used = {type(m) for name in NETS for m in compiled(name).children()}
    assert not runtime_classes() - used
    # The torch.nn built-ins the layers lower to are described by the same rule.
    assert {nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.LeakyReLU, nn.Flatten, nn.Softmax} <= used


def test_a_torch_builtin_describes_its_bias_by_presence():
    args = constructor_args(compiled("VISION").deconv)
    assert args == {"in_channels": 4, "out_channels": 3, "kernel_size": (2, 2), "stride": (2, 2),
                    "padding": (0, 0), "output_padding": (0, 0), "groups": 1, "bias": False,
                    "dilation": (1, 1), "padding_mode": "zeros"}


def test_runtime_modules_hold_no_protobuf_message():
    for name in NETS:
        for module in compiled(name).modules():
            for value in vars(module).values():
                assert "google.protobuf" not in type(value).__module__, (module, value)


def test_torch_save_and_load_of_a_compiled_module():
    """A user pickling their own model: netdef itself never unpickles a file."""
    for name, first in [("VISION", "conv"), ("SSD", "fmap")]:
        gm = compiled(name)
        conv = getattr(gm, first)
        load_weights(netdef.record(gm).net, gm, {first: [conv.weight.detach().numpy(),
                                                         conv.bias.detach().numpy()]})
        buffer = io.BytesIO()
        torch.save(gm, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        want, got = run(gm, name), run(loaded, name)
        assert all(torch.equal(want[k], got[k]) for k in want)
        # Unpickling re-traces the code: the backend's fused BatchNorm + Scale and the
        # export guard stay single calls.
        assert [(n.op, n.target) for n in loaded.graph.nodes] == [(n.op, n.target) for n in gm.graph.nodes]
        assert loaded.training == gm.training
        # The module record, with its IR, comes back too (netdef.export and save use it).
        assert [l.param for l in netdef.record(loaded).net.layers] == \
            [l.param for l in netdef.record(gm).net.layers]
        assert netdef.record(loaded).layer_names == netdef.record(gm).layer_names
        assert netdef.record(loaded).weights == netdef.record(gm).weights
        again = io.BytesIO()
        torch.save(copy.copy(loaded), again)
        again.seek(0)
        assert netdef.record(torch.load(again, weights_only=False)).output_names == \
            netdef.record(gm).output_names


def onnx_modules():
    onnx = pytest.importorskip("onnx", reason="ONNX export checks need the onnx package (test extra)")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (test extra)")
    return onnx


def test_an_ssd_net_exports_to_onnx_up_to_its_detection():
    onnx_modules()
    from onnx.reference import ReferenceEvaluator
    gm = compiled("SSD", outputs=DETECTION_BOTTOMS).eval()
    x = feeds("SSD")["data"]
    proto = torch.onnx.export(gm, (x,), dynamo=True).model_proto
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    want = run(gm, "SSD")
    for value, key in zip(got, DETECTION_BOTTOMS):
        torch.testing.assert_close(torch.from_numpy(value), want[key], rtol=1e-5, atol=1e-6)
    # The priors are a constant of the input size, exported bit for bit.
    assert torch.equal(torch.from_numpy(got[2]), want["prior"])


def test_exporting_a_detection_output_is_refused_naming_the_layer():
    gm = compiled("SSD").eval()
    x = feeds("SSD")["data"]
    run(gm, "SSD")                 # the module itself runs
    with pytest.raises(netdef.NetdefError) as e:
        torch.export.export(gm, (x,))
    assert e.value.layer == "det" and "DetectionOutput cannot be exported" in e.value.message
    assert "outputs=['loc_flat', 'conf_out', 'prior']" in e.value.hint and "`det`" in e.value.hint
    onnx_modules()
    with pytest.raises(Exception) as e:
        torch.onnx.export(gm, (x,), dynamo=True)
    cause = e.value
    while cause is not None and not isinstance(cause, netdef.NetdefError):
        cause = cause.__cause__
    assert cause is not None and cause.layer == "det", e.value

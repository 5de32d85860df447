"""SPP, Embed, BatchReindex, Parameter and Im2col on small inline nets, against numpy
written from Caffe's loops (spp_layer.cpp building pooling_layer.cpp's Forward_cpu,
embed_layer.cpp, batch_reindex_layer.cpp, parameter_layer.hpp, im2col.cpp), with their
gradients, the checks Caffe makes (located errors at check time, the index checks at run
time), caffemodel blobs in Caffe's shapes, and summary, drawing and the netdef language.
"""
import math

import numpy as np
import pytest
import torch

import netdef
from compiler.backends import draw, dsl_writer
from compiler.backends.summary import summarize
from compiler.frontends import dsl
from compiler.frontends.prototxt import parse_net_text
from compiler.frontends.upgrade import upgrade_layers
from compiler.proto import caffe_pb2
from tests.nets import compile_text, inputs, layer, parse_text, randn, refused

FLT_MAX = np.float32(3.4028234663852886e38)


def leaf(a):
    return torch.tensor(a, requires_grad=True)


# --- SPP ---------------------------------------------------------------------------------

def caffe_pool(x, is_max, kernel, pad):
    """pooling_layer.cpp with stride = kernel (as SPP sets it), CEIL rounding: -> (top,
    gradient of top.sum() with respect to x)."""
    n, c, height, width = x.shape
    (kh, kw), (ph, pw) = kernel, pad
    oh = int(math.ceil((height + 2 * ph - kh) / kh)) + 1
    ow = int(math.ceil((width + 2 * pw - kw) / kw)) + 1
    if ph or pw:                     # Caffe clips both axes when either has padding
        oh -= (oh - 1) * kh >= height + ph
        ow -= (ow - 1) * kw >= width + pw
    top = np.zeros((n, c, oh, ow), np.float32)
    grad = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * kh - ph, j * kw - pw
            h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
            size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, height), min(w1, width)
            window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            if is_max:
                top[:, :, i, j] = window.max(-1)
                arg = window.argmax(-1)                 # the first maximum, as Caffe's strict >
                for a in range(n):
                    for b in range(c):
                        r, s = divmod(arg[a, b], w1 - w0)
                        grad[a, b, h0 + r, w0 + s] += 1
            else:
                top[:, :, i, j] = window.sum(-1) / size
                grad[:, :, h0:h1, w0:w1] += np.float32(1) / size
    return top, grad


def caffe_spp(x, height, is_max):
    """spp_layer.cpp: GetPoolingParam per level, each level flattened, concatenated;
    pyramid_height 1 is the one pooling, unflattened."""
    tops, grad = [], np.zeros_like(x)
    for level in range(height):
        bins = 2 ** level
        kernel = [int(math.ceil(size / bins)) for size in x.shape[2:]]
        pad = [(k * bins - size + 1) // 2 for k, size in zip(kernel, x.shape[2:])]
        top, g = caffe_pool(x, is_max, kernel, pad)
        tops.append(top)
        grad += g
    if height == 1:
        return tops[0], grad
    return np.concatenate([t.reshape(len(x), -1) for t in tops], 1), grad


def spp_net(shape, params):
    return inputs(data=shape) + layer("spp", "SPP", ["data"], "spp_param { %s }" % params)


@pytest.mark.parametrize("shape, run_shape, height, pool", [
    ((2, 3, 13, 11), (2, 3, 13, 11), 3, "MAX"),
    ((2, 3, 13, 11), (2, 3, 13, 11), 3, "AVE"),
    ((1, 2, 12, 13), (1, 2, 12, 13), 3, "AVE"),       # pad 0 on one axis, 2 on the other
    ((2, 2, 7, 9), (2, 2, 7, 9), 2, "MAX"),
    ((2, 3, 13, 11), (4, 3, 20, 17), 3, "AVE"),       # the levels follow the input it gets
    ((1, 2, 5, 6), (1, 2, 5, 6), 1, "MAX"),
])
def test_spp_against_caffe(shape, run_shape, height, pool):
    gm = compile_text(spp_net(shape, "pyramid_height: %d pool: %s" % (height, pool)))
    x = randn(*run_shape)
    xt = leaf(x)
    top = gm(data=xt)["spp"]
    top.sum().backward()
    want, grad = caffe_spp(x, height, pool == "MAX")
    assert tuple(top.shape) == want.shape
    np.testing.assert_allclose(top.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-5, atol=1e-6)


def test_spp_shapes_follow_caffes_levels():
    # Three levels of 1, 4 and 16 bins over 3 channels; pyramid_height 1 is Caffe's lone
    # Pooling, not flattened; the default pool is MAX.
    assert parse_text(spp_net((2, 3, 13, 11), "pyramid_height: 3")).shape("spp") == (2, 3 * 21)
    assert parse_text(spp_net((2, 3, 13, 11), "pyramid_height: 1")).shape("spp") == (2, 3, 1, 1)
    rows, _ = summarize(parse_text(spp_net((2, 3, 13, 11), "pyramid_height: 3")))
    assert next(r for r in rows if r["name"] == "spp")["params"] == 0


@pytest.mark.parametrize("shape, params, message, hint", [
    ((2, 3, 8, 8), "", "pyramid_height must be set", "pyramid_height: N"),
    ((2, 3, 5, 11), "pyramid_height: 4", "pyramid level 2 (4 bins per axis: kernel [2, 3], stride [2, 3], "
     "pad [2, 1]): pad 2 is not smaller than kernel 2", "a 5x11 input allows pyramid_height 2 at most"),
    ((2, 3, 8), "pyramid_height: 2", "SPP needs an (N, C, H, W) input", None),
    ((2, 3, 8, 8), "pyramid_height: 2 pool: STOCHASTIC", "STOCHASTIC pooling is not supported", "MAX or AVE"),
])
def test_spp_refusals_are_located(shape, params, message, hint):
    e = refused(spp_net(shape, params))
    assert e.errors[0].layer == "spp" and message in e.errors[0].message
    assert hint is None or hint in e.errors[0].hint


def test_spp_refuses_at_run_time_an_input_too_small_for_its_pyramid():
    gm = compile_text(spp_net((1, 1, 16, 16), "pyramid_height: 4"))
    with pytest.raises(netdef.NetdefError, match="layer 'spp': a 5x5 input is too small for pyramid_height 4"):
        gm(data=torch.zeros(1, 1, 5, 5))


# --- Embed -------------------------------------------------------------------------------

IDS = np.array([[0, 4, 2], [4, 4, 1]], np.float32)


def embed_net(params):
    return inputs(ids=(2, 3)) + layer("emb", "Embed", ["ids"], "embed_param { %s }" % params)


@pytest.mark.parametrize("bias", [True, False])
def test_embed_against_caffe(bias):
    weight, b = randn(5, 4, seed=1), randn(4, seed=2)
    gm = compile_text(embed_net("num_output: 4 input_dim: 5 bias_term: %s" % str(bias).lower()),
                      {"emb": [weight, b] if bias else [weight]})
    ids = leaf(IDS)
    top = gm(ids=ids)["emb"]
    upstream = randn(2, 3, 4, seed=3)
    top.backward(torch.from_numpy(upstream))
    want = weight[IDS.astype(int)] + (b if bias else 0)
    np.testing.assert_allclose(top.detach().numpy(), want, rtol=1e-6)
    # Caffe's backward: an axpy of the top's gradient into the row of each position's
    # index, the bias's gradient summed over positions; none to the indices.
    weight_grad = np.zeros_like(weight)
    for index, g in zip(IDS.astype(int).ravel(), upstream.reshape(-1, 4)):
        weight_grad[index] += g
    np.testing.assert_allclose(gm.emb.weight.grad.numpy(), weight_grad, rtol=1e-6)
    if bias:
        np.testing.assert_allclose(gm.emb.bias.grad.numpy(), upstream.reshape(-1, 4).sum(0), rtol=1e-5)
    assert ids.grad is None


def test_embed_blobs_fillers_and_caffemodel(tmp_path):
    net = parse_text(embed_net("num_output: 4 input_dim: 5 weight_filler { type: 'constant' value: 2 }"))
    gm = netdef.compile_net(net, outputs="all")
    # Caffe's blobs: weight (input_dim, num_output), bias (num_output), zero by default.
    assert tuple(gm.emb.weight.shape) == (5, 4) and tuple(gm.emb.bias.shape) == (4,)
    assert (gm.emb.weight == 2).all() and (gm.emb.bias == 0).all()
    assert gm(ids=torch.from_numpy(IDS))["emb"].shape == (2, 3, 4)
    # A caffemodel Caffe writes for it loads.
    weight, b = randn(5, 4, seed=4), randn(4, seed=5)
    proto = caffe_pb2.NetParameter(name="t")
    saved = proto.layer.add(name="emb", type="Embed")
    for array in (weight, b):
        blob = saved.blobs.add()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel().tolist())
    path = tmp_path / "t.caffemodel"
    path.write_bytes(proto.SerializeToString())
    loaded = netdef.compile_net(net, path, outputs="all")
    np.testing.assert_array_equal(loaded(ids=torch.from_numpy(IDS))["emb"].detach().numpy(),
                                  weight[IDS.astype(int)] + b)


@pytest.mark.parametrize("ids, value, position", [
    ([[0, 5, 2], [4, 4, 1]], "5.0", "[0, 1]"),
    ([[0, 1, 2], [-1, 4, 1]], "-1.0", "[1, 0]"),
    ([[0, 1, 2.5], [4, 4, 1]], "2.5", "[0, 2]"),
    ([[0, 1, 2], [4, float("nan"), 1]], "nan", "[1, 1]"),
])
def test_embed_refuses_an_index_outside_its_table(ids, value, position):
    gm = compile_text(embed_net("num_output: 4 input_dim: 5"))
    with pytest.raises(netdef.NetdefError) as e:
        gm(ids=torch.tensor(ids, dtype=torch.float32))
    assert "layer 'emb': index %s at position %s is not an integer in [0, 5)" % (value, position) in str(e.value)


def test_embed_index_check_is_a_runtime_assertion_under_torch_export():
    gm = netdef.compile_net(parse_text(embed_net("num_output: 4 input_dim: 5")))
    exported = torch.export.export(gm, (), {"ids": torch.from_numpy(IDS)}).module()
    assert exported(ids=torch.from_numpy(IDS))["emb"].shape == (2, 3, 4)
    with pytest.raises(RuntimeError):
        exported(ids=torch.tensor([[0.0, 5, 2], [4, 4, 1]]))


@pytest.mark.parametrize("params, message", [
    ("input_dim: 5", "num_output must be set and positive"),
    ("num_output: 4", "input_dim must be set and positive"),
])
def test_embed_refusals_are_located(params, message):
    e = refused(embed_net(params))
    assert e.errors[0].layer == "emb" and message in e.errors[0].message


# --- BatchReindex ------------------------------------------------------------------------

def test_batch_reindex_against_caffe():
    data = randn(3, 2, 4)
    # Caffe truncates each index (static_cast<int>): 1.9 reads item 1; repeats are allowed.
    indices = np.array([2, 0, 2, 1.9, 0], np.float32)
    gm = compile_text(inputs(data=(3, 2, 4), idx=(5,)) + layer("re", "BatchReindex", ["data", "idx"]))
    x, idx = leaf(data), leaf(indices)
    top = gm(data=x, idx=idx)["re"]
    upstream = randn(5, 2, 4, seed=1)
    top.backward(torch.from_numpy(upstream))
    index = indices.astype(int)
    np.testing.assert_array_equal(top.detach().numpy(), data[index])
    grad = np.zeros_like(data)
    for n, i in enumerate(index):
        grad[i] += upstream[n]
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-6)
    assert idx.grad is None


@pytest.mark.parametrize("bad", [3.0, -0.5])
def test_batch_reindex_refuses_an_index_outside_the_batch(bad):
    gm = compile_text(inputs(data=(3, 2), idx=(2,)) + layer("re", "BatchReindex", ["data", "idx"]))
    with pytest.raises(netdef.NetdefError, match=r"layer 're': index %s at position \[1\] is outside \[0, 3\)"
                       % bad):
        gm(data=torch.zeros(3, 2), idx=torch.tensor([0.0, bad]))


def test_batch_reindex_shape_and_refusal():
    net = parse_text(inputs(data=(3, 2, 4), idx=(7,)) + layer("re", "BatchReindex", ["data", "idx"]))
    assert net.shape("re") == (7, 2, 4)
    e = refused(inputs(data=(3, 2), idx=(2, 1)) + layer("re", "BatchReindex", ["data", "idx"]))
    assert e.errors[0].layer == "re" and "must be a 1-axis blob" in e.errors[0].message


# --- Parameter ---------------------------------------------------------------------------

PARAMETER = inputs(data=(2, 3)) + layer("p", "Parameter", [], "parameter_param { shape { dim: 2 dim: 3 } }") + \
    layer("prod", "Eltwise", ["data", "p"], "eltwise_param { operation: PROD }")


def test_parameter_is_a_learnable_top(tmp_path):
    net = parse_text(PARAMETER)
    assert net.shape("p") == (2, 3)
    rows, _ = summarize(net)
    assert next(r for r in rows if r["name"] == "p")["params"] == 6
    gm = netdef.compile_net(net, outputs="all")
    assert (gm.p.value == 0).all()                  # Caffe allocates the blob zeroed
    value = randn(2, 3, seed=1)
    proto = caffe_pb2.NetParameter(name="t")
    blob = proto.layer.add(name="p", type="Parameter").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend(value.ravel().tolist())
    path = tmp_path / "t.caffemodel"
    path.write_bytes(proto.SerializeToString())
    gm = netdef.compile_net(net, path, outputs="all")
    data = randn(2, 3, seed=2)
    out = gm(data=torch.from_numpy(data))
    np.testing.assert_array_equal(out["p"].detach().numpy(), value)
    out["prod"].sum().backward()
    # The top shares the blob's gradient: what reaches the top reaches the blob.
    np.testing.assert_allclose(gm.p.value.grad.numpy(), data, rtol=1e-6)


def test_parameter_takes_no_bottom():
    e = refused(inputs(data=(2, 3)) + layer("p", "Parameter", ["data"], "parameter_param { shape { dim: 2 } }"))
    assert e.errors[0].layer == "p" and "Parameter takes 0 bottoms, got 1" in e.errors[0].message


# --- Im2col ------------------------------------------------------------------------------

def caffe_im2col(x, kernel, pad, stride, dilation):
    """im2col.cpp's im2col_cpu per item: for each channel, kernel row, kernel column, the
    output rows and columns, zero outside the input. -> (columns, gradient of their sum)."""
    n, c, height, width = x.shape
    oh, ow = [(size + 2 * p - (d * (k - 1) + 1)) // s + 1
              for size, k, p, s, d in zip((height, width), kernel, pad, stride, dilation)]
    cols = np.zeros((n, c * kernel[0] * kernel[1], oh, ow), np.float32)
    grad = np.zeros_like(x)
    row = 0
    for ch in range(c):
        for ki in range(kernel[0]):
            for kj in range(kernel[1]):
                for i in range(oh):
                    for j in range(ow):
                        h = i * stride[0] - pad[0] + ki * dilation[0]
                        w = j * stride[1] - pad[1] + kj * dilation[1]
                        if 0 <= h < height and 0 <= w < width:
                            cols[:, row, i, j] = x[:, ch, h, w]
                            grad[:, ch, h, w] += 1
                row += 1
    return cols, grad


@pytest.mark.parametrize("params, kernel, pad, stride, dilation", [
    ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (1, 1), (2, 2), (1, 1)),
    ("kernel_size: 3 stride: 1 pad: 2 dilation: 2", (3, 3), (2, 2), (1, 1), (2, 2)),
    ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_w: 1", (2, 3), (0, 1), (1, 2), (1, 1)),
    ("kernel_size: 1", (1, 1), (0, 0), (1, 1), (1, 1)),
])
def test_im2col_against_caffe(params, kernel, pad, stride, dilation):
    gm = compile_text(inputs(data=(2, 3, 6, 7)) + layer("cols", "Im2col", ["data"],
                                                        "convolution_param { %s }" % params))
    x = randn(2, 3, 6, 7)
    xt = leaf(x)
    top = gm(data=xt)["cols"]
    top.sum().backward()
    want, grad = caffe_im2col(x, kernel, pad, stride, dilation)
    np.testing.assert_array_equal(top.detach().numpy(), want)
    np.testing.assert_array_equal(xt.grad.numpy(), grad)


@pytest.mark.parametrize("shape, params, message", [
    ((2, 3, 6), "kernel_size: 3", "Im2col needs an (N, C, H, W) input"),
    ((2, 3, 6, 6), "stride: 2", "kernel size is not set"),
    ((2, 3, 6, 6), "kernel_size: 9", "kernel 9 (extent 9 with dilation 1) is larger than the padded input 6"),
    ((2, 3, 6, 6), "kernel_size: 3 kernel_h: 2", "give either kernel_size or kernel_h/kernel_w, not both"),
])
def test_im2col_refusals_are_located(shape, params, message):
    e = refused(inputs(data=shape) + layer("cols", "Im2col", ["data"], "convolution_param { %s }" % params))
    assert e.errors[0].layer == "cols" and message in e.errors[0].message


# --- every type: the netdef language, drawings ------------------------------------------

ALL = inputs(data=(2, 3, 13, 11), ids=(2, 5), idx=(3,)) + "".join([
    layer("pyramid", "SPP", ["data"], "spp_param { pyramid_height: 3 pool: AVE }"),
    layer("cols", "Im2col", ["data"], "convolution_param { kernel_size: 3 stride: 2 pad: 1 }"),
    layer("emb", "Embed", ["ids"], "embed_param { num_output: 4 input_dim: 10 bias_term: false "
                                   "weight_filler { type: 'xavier' } }"),
    layer("re", "BatchReindex", ["data", "idx"]),
    layer("p", "Parameter", [], "parameter_param { shape { dim: 3 dim: 4 } }"),
])


def test_the_types_convert_to_the_netdef_language_and_back():
    proto, blocks, lines = parse_net_text(ALL, "t.prototxt")
    params = [l.param for l in upgrade_layers(proto, blocks, "t.prototxt", lines)]
    text = dsl_writer.to_dsl("t", params)
    for call in ("spp(3, pool=AVE)", "im2col(k=3, s=2, p=1)", "embed(4, input_dim=10, bias=false",
                 "BatchReindex(data, idx)", "Parameter(shape=[3, 4])"):
        assert call in text
    assert list(dsl.load_proto("t.net", text=text).layer) == params


def test_the_types_are_called_from_a_net_file(tmp_path):
    path = tmp_path / "t.net"
    path.write_text('net T {\n    input data: 3x8x8, ids: 4, batch=2\n'
                    '    pyr = data -> spp(2)\n    cols = data -> im2col(k=2, s=2)\n'
                    '    emb = ids -> embed(6, 9)\n    p = Parameter(shape=[2, 4, 6])\n}\n')
    net = netdef.parse(path)
    assert net.shape("pyr") == (2, 15) and net.shape("cols") == (2, 12, 4, 4)
    assert net.shape("emb") == (2, 4, 6) and net.shape("p") == (2, 4, 6)


def test_the_types_are_drawn_with_their_parameters():
    view = draw.build_view(parse_text(ALL))
    keys = {n["name"]: n["layers"][0]["key"] for n in view["nodes"]}
    assert keys["pyramid"] == "AVE pyramid 3" and keys["cols"] == "k3 s2 p1"
    assert keys["emb"] == "10x4 table" and keys["p"] == "3x4"


def test_the_index_layers_run_on_the_meta_device_for_the_training_step_measure():
    # netdef time measures a training step on PyTorch's meta device, where no index has a
    # value to check.
    from compiler.accounting import training_step_bytes
    from netdef.training.memory import training_step_memory
    net = parse_text(inputs(ids=(4, 5), data=(3, 2), idx=(4,)) + "".join([
        layer("emb", "Embed", ["ids"], "embed_param { num_output: 2 input_dim: 7 }"),
        layer("re", "BatchReindex", ["data", "idx"]),
        layer("loss", "EuclideanLoss", ["re", "re"]),
    ]), phase="TRAIN")
    measured = training_step_memory(netdef.compile_net(net), {"ids": (4, 5), "data": (3, 2), "idx": (4,)})
    assert measured.weights == training_step_bytes(net).weights == (7 * 2 + 2) * 4

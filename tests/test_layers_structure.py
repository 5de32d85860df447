"""Structure, reduction and loss layers on small inline nets.

The golden cases pin the TEST forward of the structure layers, ArgMax and Reduction
against real Caffe; these tests cover what they do not: the loss layers and Accuracy
(against Caffe's formulas in float64 numpy, with their gradients), the hints of shape
errors, batch sizes other than the declared one, Silence, gradients through Slice,
Concat and Crop, and Caffe's tie rules.
"""
import numpy as np
import pytest
import torch

import netdef
from compiler.layers.loss import loss_weight
from tests.nets import compile_text, inputs, layer, parse_text, randn, refused


def leaf(a):
    return torch.tensor(a, requires_grad=True)


# --- SoftmaxWithLoss --------------------------------------------------------------------

LABELS = np.array([[0, 3, 255], [2, 255, 1]], np.float32)   # (N, H): 255 is ignored


def softmax_np(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("loss_param, divisor", [
    ("normalization: FULL", 6), ("normalization: VALID", 4), ("normalization: BATCH_SIZE", 2),
    ("normalization: NONE", 1), ("", 4), ("normalize: true", 4), ("normalize: false", 2)])
def test_softmax_loss_ignore_label_and_normalization(loss_param, divisor):
    x = randn(2, 5, 3).astype(np.float64)
    gm = compile_text(inputs(data=(2, 5, 3), label=(2, 3)) + layer(
        "loss", "SoftmaxWithLoss", ["data", "label"], "loss_param { ignore_label: 255 %s }" % loss_param))
    xt = leaf(x.astype(np.float32))
    loss = gm(data=xt, label=torch.from_numpy(LABELS))["loss"]
    loss.backward()

    prob = softmax_np(x, 1)
    keep = LABELS != 255
    safe = np.where(keep, LABELS, 0).astype(int)
    picked = np.take_along_axis(prob, safe[:, None, :], 1)[:, 0, :]
    expected = -np.log(picked)[keep].sum() / divisor
    grad = prob.copy()
    np.put_along_axis(grad, safe[:, None, :], np.take_along_axis(grad, safe[:, None, :], 1) - 1, 1)
    grad = grad * keep[:, None, :] / divisor
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-4, atol=1e-6)


def test_softmax_loss_second_top_is_the_softmax_and_needs_loss_weights():
    body = layer("loss", "SoftmaxWithLoss", ["data", "label"], "loss_weight: 1 loss_weight: 0",
                 tops=["loss", "prob"])
    net = parse_text(inputs(data=(2, 4), label=(2,)) + body)
    assert loss_weight(net.layer("loss")) == [1.0, 0.0]
    x = randn(2, 4)
    out = netdef.compile_net(net, outputs="all")(data=torch.from_numpy(x),
                                                  label=torch.tensor([3.0, 0.0]))
    np.testing.assert_allclose(out["prob"].numpy(), softmax_np(x, 1), rtol=1e-5)
    # Caffe's default weight fits only a one-top loss layer.
    e = refused(inputs(data=(2, 4), label=(2,)) + body.replace("loss_weight: 1 loss_weight: 0", ""))
    assert "loss_weight: 1 loss_weight: 0" in e.hint


def test_softmax_loss_clamps_like_caffe_but_keeps_its_gradient():
    # prob of the label underflows: Caffe's loss is -log(FLT_MIN), its gradient prob - 1.
    gm = compile_text(inputs(data=(1, 2), label=(1,)) + layer("loss", "SoftmaxWithLoss", ["data", "label"]))
    x = leaf(np.array([[200.0, 0.0]], np.float32))
    loss = gm(data=x, label=torch.tensor([1.0]))["loss"]
    loss.backward()
    assert loss.item() == pytest.approx(-np.log(np.float32(1.1754943508222875e-38)), rel=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0]], atol=1e-6)


def test_loss_weight_defaults():
    net = parse_text(inputs(data=(2, 4), label=(2,)) + layer("loss", "SoftmaxWithLoss", ["data", "label"])
                     + layer("acc", "Accuracy", ["data", "label"])
                     + layer("l2", "EuclideanLoss", ["data", "data"], "loss_weight: 0.5"))
    assert loss_weight(net.layer("loss")) == [1.0]
    assert loss_weight(net.layer("acc")) == [0.0]
    assert loss_weight(net.layer("l2")) == [0.5]


# --- other losses -----------------------------------------------------------------------

@pytest.mark.parametrize("loss_param, divisor", [("", 2), ("normalization: VALID", 22),
                                                 ("normalization: FULL", 24)])
def test_sigmoid_cross_entropy(loss_param, divisor):
    x = randn(2, 3, 4) * 4   # large enough to exercise both branches of the stable form
    t = (randn(2, 3, 4, seed=1) > 0).astype(np.float32)
    t[0, 0, :2] = -1         # ignored
    gm = compile_text(inputs(data=(2, 3, 4), target=(2, 12)) + layer(
        "loss", "SigmoidCrossEntropyLoss", ["data", "target"], "loss_param { ignore_label: -1 %s }" % loss_param))
    xt = leaf(x)
    loss = gm(data=xt, target=torch.from_numpy(t.reshape(2, 12)))["loss"]
    loss.backward()

    x64, keep = x.astype(np.float64), t != -1
    p = 1 / (1 + np.exp(-x64))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p))[keep].sum() / divisor
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(xt.grad.numpy(), (p - t) * keep / divisor, rtol=1e-4, atol=1e-7)


def test_euclidean_loss():
    a, b = randn(3, 4), randn(3, 2, 2, seed=1)
    gm = compile_text(inputs(a=(3, 4), b=(3, 2, 2)) + layer("loss", "EuclideanLoss", ["a", "b"]))
    at, bt = leaf(a), leaf(b)
    loss = gm(a=at, b=bt)["loss"]
    loss.backward()
    diff = a.astype(np.float64) - b.reshape(3, 4)
    np.testing.assert_allclose(loss.item(), (diff ** 2).sum() / 3 / 2, rtol=1e-5)
    np.testing.assert_allclose(at.grad.numpy(), diff / 3, rtol=1e-5)
    np.testing.assert_allclose(bt.grad.numpy(), -diff.reshape(3, 2, 2) / 3, rtol=1e-5)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy):
    a, b = randn(4, 3), randn(4, 3, seed=1) * 0.3
    b[2] = a[2] + 1e-3                    # small distance: Caffe's 1e-4 in the gradient shows
    b[3] = a[3]                           # distance 0: Caffe's gradient stays finite
    sim = np.array([1, 0, 0, 0], np.float32)
    margin = 2.0
    gm = compile_text(inputs(a=(4, 3), b=(4, 3), sim=(4,)) + layer(
        "loss", "ContrastiveLoss", ["a", "b", "sim"],
        "contrastive_loss_param { margin: %g legacy_version: %s }" % (margin, str(legacy).lower())))
    at, bt = leaf(a), leaf(b)
    loss = gm(a=at, b=bt, sim=torch.from_numpy(sim))["loss"]
    loss.backward()

    diff = a.astype(np.float64) - b
    d2 = (diff ** 2).sum(1)
    d = np.sqrt(d2)
    if legacy:
        dissim = np.maximum(margin - d2, 0)
        beta = -(margin - d2 > 0).astype(np.float64)          # Caffe: -alpha
    else:
        dissim = np.maximum(margin - d, 0) ** 2
        beta = -np.maximum(margin - d, 0) / (d + 1e-4)        # Caffe: -alpha * mdist / (dist + 1e-4)
    expected = np.where(sim == 1, d2, dissim).sum() / 4 / 2
    grad = np.where(sim[:, None] == 1, diff, beta[:, None] * diff) / 4
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(at.grad.numpy(), grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bt.grad.numpy(), -grad, rtol=1e-4, atol=1e-7)


def test_accuracy_top_k_ties_ignore_label_and_per_class():
    scores = np.array([[0.1, 0.5, 0.4, 0.0],     # label 2: one better -> top-2 hit
                       [0.3, 0.3, 0.3, 0.1],     # label 0: two others tie with it -> miss
                       [0.9, 0.0, 0.0, 0.0],     # label 0: top-1 hit
                       [0.0, 0.0, 0.2, 0.1],     # label 3: one better -> top-2 hit
                       [0.0, 1.0, 0.0, 0.0]],    # ignored
                      np.float32)
    labels = np.array([2, 0, 0, 3, 7], np.float32)
    gm = compile_text(inputs(data=(5, 4), label=(5,)) + layer(
        "acc", "Accuracy", ["data", "label"], "accuracy_param { top_k: 2 ignore_label: 7 }",
        tops=["acc", "per_class"]))
    out = gm(data=torch.from_numpy(scores), label=torch.from_numpy(labels))
    assert out["acc"].shape == ()
    assert out["acc"].item() == pytest.approx(3 / 4)
    np.testing.assert_allclose(out["per_class"].numpy(), [0.5, 0.0, 1.0, 1.0])


# --- shape errors and their hints -------------------------------------------------------

def test_eltwise_mismatch_proposes_the_projection_shortcut():
    text = inputs(x=(2, 64, 56, 56), fx=(2, 256, 28, 28)) + layer("sum", "Eltwise", ["fx", "x"])
    e = refused(text)
    assert e.layer == "sum" and e.line
    assert "[2, 64, 56, 56]" in e.message and "[2, 256, 28, 28]" in e.message
    assert e.hint == "add a 1x1 Convolution (W_s) on 'x' with num_output: 256 and stride: 2"
    e = refused(inputs(x=(2, 64, 56, 56), fx=(2, 256, 56, 56)) + layer("sum", "Eltwise", ["x", "fx"]))
    assert e.hint == "add a 1x1 Convolution (W_s) on 'x' with num_output: 256 and stride: 1"
    # odd sizes: Caffe's 1x1 stride-2 output is (n - 1) // 2 + 1
    e = refused(inputs(x=(2, 16, 7, 7), fx=(2, 32, 4, 4)) + layer("sum", "Eltwise", ["x", "fx"]))
    assert "num_output: 32 and stride: 2" in e.hint


def test_concat_mismatch_proposes_same_padding():
    text = inputs(data=(1, 8, 9, 9)) + \
        layer("b1", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 1 }") + \
        layer("b3", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 }") + \
        layer("b5", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 5 }") + \
        layer("cat", "Concat", ["b1", "b3", "b5"])
    e = refused(text)
    assert e.layer == "cat"
    assert "[1, 4, 9, 9]" in e.message and "[1, 4, 7, 7]" in e.message
    assert "'b3'" in e.hint and "pad: 1 more" in e.hint
    assert "'b5'" in e.hint and "pad: 2 more" in e.hint
    # the proposed pads make the net valid
    fixed = text.replace("kernel_size: 3", "kernel_size: 3 pad: 1").replace("kernel_size: 5", "kernel_size: 5 pad: 2")
    assert parse_text(fixed).shape("cat") == (1, 12, 9, 9)


def test_concat_and_slice_legacy_axes():
    text = inputs(a=(2, 3, 4), b=(2, 3, 2)) + layer("cat", "Concat", ["a", "b"], "concat_param { concat_dim: 2 }") + \
        layer("sl", "Slice", ["cat"], "slice_param { slice_dim: 2 slice_point: 1 }", tops=["s1", "s2"])
    net = parse_text(text)
    assert net.shape("cat") == (2, 3, 6) and net.shape("s1") == (2, 3, 1) and net.shape("s2") == (2, 3, 5)
    e = refused(text.replace("concat_dim: 2", "concat_dim: 2 axis: 2"))
    assert "not both" in e.message


def test_slice_and_crop_errors_have_hints():
    e = refused(inputs(data=(2, 5)) + layer("sl", "Slice", ["data"], tops=["a", "b"]))
    assert "evenly" in e.message and "slice_point" in e.hint
    e = refused(inputs(data=(2, 3, 9, 7), ref=(2, 3, 5, 4)) +
                    layer("crop", "Crop", ["data", "ref"], "crop_param { offset: 3 offset: 4 }"))
    assert e.hint == "use offset 3 or less on axis 3"


# --- any batch size ---------------------------------------------------------------------

def test_reshape_flatten_and_friends_follow_the_batch_size():
    text = inputs(data=(2, 3, 4, 6), ref=(2, 3, 2, 2)) + \
        layer("r1", "Reshape", ["data"], "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }") + \
        layer("r4", "Reshape", ["data"], "reshape_param { shape { dim: -1 dim: 8 } }") + \
        layer("fl", "Flatten", ["data"]) + \
        layer("sl", "Slice", ["data"], "slice_param { axis: 0 }", tops=["s1", "s2"]) + \
        layer("crop", "Crop", ["data", "ref"]) + \
        layer("tile", "Tile", ["data"], "tile_param { tiles: 2 }")
    gm = compile_text(text)
    x = randn(6, 3, 4, 6)
    out = gm(data=torch.from_numpy(x), ref=torch.zeros(6, 3, 2, 2))
    assert out["r1"].shape == (6, 18, 4)
    assert out["r4"].shape == (54, 8)
    np.testing.assert_array_equal(out["fl"].numpy(), x.reshape(6, 72))
    assert out["s1"].shape == out["s2"].shape == (3, 3, 4, 6)
    np.testing.assert_array_equal(out["crop"].numpy(), x[:, :, :2, :2])
    np.testing.assert_array_equal(out["tile"].numpy(), np.concatenate([x, x], 1))


def test_reshape_in_place_is_refused():
    e = refused(inputs(data=(2, 6)) + layer("r", "Reshape", ["data"], "reshape_param { shape { dim: 3 dim: 4 } }",
                                                tops=["data"]))
    assert "in-place" in e.message


# --- Silence, gradients, ties -----------------------------------------------------------

def test_silence_has_no_tops_and_hides_its_bottoms():
    text = inputs(data=(2, 4)) + layer("sl", "Slice", ["data"], tops=["a", "b"]) + layer("quiet", "Silence", ["b"], tops=[])
    net = parse_text(text)
    assert net.outputs == ["a"]
    x = leaf(randn(2, 4))
    out = netdef.compile_net(net)(data=x)
    assert list(out) == ["a"]
    out["a"].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1, 0, 0], [1, 1, 0, 0]])


def test_gradients_flow_through_slice_concat_and_crop():
    text = inputs(data=(1, 4, 5, 5), ref=(1, 1, 3, 3)) + \
        layer("sl", "Slice", ["data"], "slice_param { slice_point: 1 slice_point: 3 }", tops=["a", "b", "c"]) + \
        layer("cat", "Concat", ["c", "a"]) + \
        layer("crop", "Crop", ["cat", "ref"], "crop_param { axis: 1 offset: 1 offset: 2 offset: 0 }")
    gm = netdef.compile_net(parse_text(text))
    x, ref = leaf(randn(1, 4, 5, 5)), leaf(np.zeros((1, 1, 3, 3), np.float32))
    out = gm(data=x, ref=ref)["crop"]
    assert out.shape == (1, 1, 3, 3)
    weights = torch.arange(9.0).reshape(1, 1, 3, 3)
    (out * weights).sum().backward()
    # cat = [c (channel 3), a (channel 0)]; channel 1 of cat is a, rows 2..4, cols 0..2
    expected = np.zeros((1, 4, 5, 5), np.float32)
    expected[0, 0, 2:5, 0:3] = weights[0, 0].numpy()
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    np.testing.assert_array_equal(out.detach().numpy(), x.detach().numpy()[:, 0:1, 2:5, 0:3])
    assert ref.grad is None


def test_eltwise_max_ties_and_gradient_follow_caffe():
    text = inputs(a=(1, 3), b=(1, 3), c=(1, 3)) + \
        layer("mx", "Eltwise", ["a", "b", "c"], "eltwise_param { operation: MAX }")
    gm = compile_text(text)
    a, b, c = leaf([[1.0, 2.0, 0.0]]), leaf([[1.0, 1.0, 3.0]]), leaf([[1.0, 2.0, 3.0]])
    gm(a=a, b=b, c=c)["mx"].sum().backward()
    # ties: bottom 1 beats bottom 0, an equal later bottom does not replace the max
    np.testing.assert_array_equal(a.grad.numpy(), [[0, 1, 0]])
    np.testing.assert_array_equal(b.grad.numpy(), [[1, 0, 1]])
    np.testing.assert_array_equal(c.grad.numpy(), [[0, 0, 0]])


def test_argmax_ties_rank_the_larger_index_first():
    gm = compile_text(inputs(data=(1, 5)) + layer("am", "ArgMax", ["data"], "argmax_param { top_k: 3 out_max_val: true }"))
    out = gm(data=torch.tensor([[2.0, 5.0, 2.0, 5.0, 1.0]]))["am"]
    assert out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out.numpy(), [[[3, 1, 2], [5, 5, 2]]])


def test_export_keeps_the_batch_size_free():
    text = inputs(data=(2, 3, 4, 6), ref=(2, 3, 2, 2)) + \
        layer("r4", "Reshape", ["data"], "reshape_param { shape { dim: -1 dim: 8 } }") + \
        layer("crop", "Crop", ["data", "ref"]) + \
        layer("sl", "Slice", ["data"], "slice_param { axis: 1 }", tops=["s1", "s2", "s3"]) + \
        layer("cat", "Concat", ["s3", "s1"])
    gm = compile_text(text)
    batch = torch.export.Dim("batch", min=2, max=64)
    program = torch.export.export(gm, (torch.zeros(2, 3, 4, 6), torch.zeros(2, 3, 2, 2)),
                                  dynamic_shapes=({0: batch}, {0: batch}))
    x = randn(5, 3, 4, 6)
    out = program.module()(torch.from_numpy(x), torch.zeros(5, 3, 2, 2))
    np.testing.assert_array_equal(out["r4"].numpy(), x.reshape(45, 8))
    np.testing.assert_array_equal(out["crop"].numpy(), x[:, :, :2, :2])
    np.testing.assert_array_equal(out["cat"].numpy(), x[:, [2, 0]])

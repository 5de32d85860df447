"""Elementwise, normalization and Scale/Bias layers on small nets built from prototxt text.

The golden cases pin the TEST-phase forward of most of these layers against real Caffe;
these tests cover what they do not: Clip and Swish (no Caffe of the golden set has them),
Dropout and BatchNorm in TRAIN, and backward. Expected values are computed here in
float64 numpy from Caffe's formulas.
"""
import numpy as np
import pytest
import torch

from compiler.errors import NetdefError
from tests.nets import compile_text, inputs, layer, randn


def build(layers, shape=(2, 3, 4, 5), phase="TEST", weights=None, **extra_inputs):
    """A net of an Input `data` of `shape` (and an Input per `extra_inputs`: name=shape)
    followed by the given layer text, compiled to return every blob."""
    return compile_text(inputs(data=shape, **extra_inputs) + layers, weights, phase=phase)


def run(gm, x, **inputs):
    return {k: v.detach().numpy() for k, v in gm(data=torch.from_numpy(x), **inputs).items()}


def test_clip_forward_and_gradient_bounds_included():
    x = torch.tensor([-2.0, -0.5, -0.1, 0.0, 0.75, 0.8, 3.0]).reshape(1, 1, 1, 7)
    x = x.expand(2, 3, 4, 7).contiguous().requires_grad_()
    gm = build(layer("clip", "Clip", ["data"], "clip_param { min: -0.5 max: 0.75 }"), shape=(2, 3, 4, 7))
    y = gm(data=x)["clip"]
    assert torch.equal(y[0, 0, 0], torch.tensor([-0.5, -0.5, -0.1, 0.0, 0.75, 0.75, 0.75]))
    y.sum().backward()
    # Caffe's ClipLayer passes the gradient where min <= x <= max, the bounds included.
    assert torch.equal(x.grad[0, 0, 0], torch.tensor([0.0, 1, 1, 1, 1, 0, 0]))


def test_clip_needs_both_bounds():
    with pytest.raises(NetdefError) as e:
        build(layer("clip", "Clip", ["data"], "clip_param { min: 1 max: 0 }"))
    assert e.value.layer == "clip" and "greater than max" in e.value.message


@pytest.mark.parametrize("params, beta", [("", 1.0), ("swish_param { beta: 0.5 }", 0.5),
                                          ("swish_param { beta: 3 }", 3.0)])
def test_swish_matches_formula(params, beta):
    x = randn(2, 3, 4, 5) * 4
    out = run(build(layer("sw", "Swish", ["data"], params)), x)["sw"]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, x64 / (1 + np.exp(-beta * x64)), rtol=1e-5, atol=1e-6)


def test_dropout_train_scales_kept_values_by_inverse_keep_rate():
    torch.manual_seed(0)
    shape = (4, 10, 50, 50)
    gm = build(layer("drop", "Dropout", ["data"], "dropout_param { dropout_ratio: 0.3 }"), shape, "TRAIN")
    assert gm.training
    y = run(gm, np.ones(shape, np.float32))["drop"]
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    # 100000 Bernoulli draws: the dropped fraction has std 0.0015; allow 5 std.
    assert abs(1 - kept.mean() - 0.3) < 0.0075
    assert abs(y.mean() - 1) < 0.015
    # Two forwards draw different masks.
    assert (run(gm, np.ones(shape, np.float32))["drop"] != y).any()
    gm.eval()
    x = randn(*shape)
    np.testing.assert_array_equal(run(gm, x)["drop"], x)


def test_dropout_scale_train_false_scales_at_test_time():
    torch.manual_seed(0)
    shape = (2, 10, 50, 50)
    gm = build(layer("drop", "Dropout", ["data"], "dropout_param { dropout_ratio: 0.25 scale_train: false }"),
               shape, "TRAIN")
    y = run(gm, np.ones(shape, np.float32))["drop"]
    np.testing.assert_allclose(y[y != 0], 1.0, rtol=1e-6)
    gm.eval()
    x = randn(*shape)
    np.testing.assert_allclose(run(gm, x)["drop"], x * 0.75, rtol=1e-6)


def bn_weights(c, factor, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32),
            np.array([factor], np.float32)]


BN = layer("bn", "BatchNorm", ["data"], "batch_norm_param { moving_average_fraction: 0.9 eps: 0.001 }")


def test_batchnorm_train_updates_running_sums_like_caffe():
    shape = (3, 4, 5, 2)
    blobs = bn_weights(4, 2.0)
    gm = build(BN, shape, "TRAIN", {"bn": blobs})
    x = randn(*shape, seed=3) * 2 + 1
    out = run(gm, x)["bn"]
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = x64.var(axis=(0, 2, 3))                       # biased: what normalizes the batch
    m = x.size // 4
    np.testing.assert_allclose(gm.bn.mean.numpy(), 0.9 * blobs[0] + mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gm.bn.variance.numpy(), 0.9 * blobs[1] + var * m / (m - 1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gm.bn.factor.numpy(), [0.9 * 2.0 + 1], rtol=1e-6)
    expected = (x64 - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 0.001)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (1, 4)])
def test_batchnorm_train_backward_is_caffes(shape):
    """Caffe's BatchNormLayer::Backward on batch statistics: dx = (dy - mean(dy) - xhat *
    mean(dy * xhat)) / sqrt(var + eps), means per channel; one value per channel gives 0."""
    gm = build(BN, shape, "TRAIN")
    x = torch.from_numpy(randn(*shape, seed=3) * 2 + 1).requires_grad_()
    dy = randn(*shape, seed=4)
    gm(data=x)["bn"].backward(torch.from_numpy(dy))
    axes = (0,) + tuple(range(2, len(shape)))
    x64, dy64 = x.detach().numpy().astype(np.float64), dy.astype(np.float64)
    mean, var = x64.mean(axis=axes, keepdims=True), x64.var(axis=axes, keepdims=True)
    xhat = (x64 - mean) / np.sqrt(var + 0.001)
    dx = (dy64 - dy64.mean(axis=axes, keepdims=True)
          - xhat * (dy64 * xhat).mean(axis=axes, keepdims=True)) / np.sqrt(var + 0.001)
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-4, atol=1e-5)


def test_batchnorm_test_uses_sums_divided_by_factor_and_keeps_them():
    shape = (2, 4, 3, 3)
    blobs = bn_weights(4, 2.0)
    gm = build(BN, shape, "TEST", {"bn": blobs})
    x = randn(*shape)
    out = run(gm, x)["bn"]
    mean, var = blobs[0] / 2.0, blobs[1] / 2.0
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 0.001)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(gm.bn.mean.numpy(), blobs[0])
    np.testing.assert_array_equal(gm.bn.factor.numpy(), [2.0])


def test_batchnorm_zero_factor_means_zero_statistics():
    blobs = bn_weights(4, 0.0)
    gm = build(BN, (2, 4, 3, 3), "TEST", {"bn": blobs})
    x = randn(2, 4, 3, 3)
    np.testing.assert_allclose(run(gm, x)["bn"], x / np.sqrt(np.float32(0.001)), rtol=1e-5)


@pytest.mark.parametrize("flag, phase, updates", [("true", "TRAIN", False), ("false", "TEST", True)])
def test_batchnorm_explicit_use_global_stats_overrides_the_phase(flag, phase, updates):
    gm = build(layer("bn", "BatchNorm", ["data"], "batch_norm_param { use_global_stats: %s }" % flag),
               (2, 4, 3, 3), phase, {"bn": bn_weights(4, 2.0)})
    run(gm, randn(2, 4, 3, 3))
    assert (gm.bn.factor.item() != 2.0) == updates


def test_batchnorm_blobs_are_buffers_not_parameters():
    gm = build(BN, (2, 4, 3, 3), "TRAIN")
    assert dict(gm.bn.named_parameters()) == {}
    assert set(dict(gm.bn.named_buffers())) == {"mean", "variance", "factor"}


def test_batchnorm_train_gradient_is_caffes():
    shape = (3, 4, 5, 2)
    gm = build(BN, shape, "TRAIN")
    x = torch.from_numpy(randn(*shape)).double().requires_grad_()
    gm.double()
    y = gm(data=x)["bn"]
    dy = torch.from_numpy(randn(*shape, seed=7)).double()
    y.backward(dy)
    # Caffe's BatchNormLayer::Backward_cpu: (dY - mean(dY) - mean(dY*Y)*Y) / sqrt(var + eps),
    # means over N, H, W.
    dims = (0, 2, 3)
    var = x.detach().var(dim=dims, correction=0, keepdim=True)
    yd = y.detach()
    want = (dy - dy.mean(dims, keepdim=True) - (dy * yd).mean(dims, keepdim=True) * yd) / \
        torch.sqrt(var + 0.001)
    torch.testing.assert_close(x.grad, want)


def test_prelu_gradient_at_zero_is_the_slope():
    gm = build(layer("pr", "PReLU", ["data"]), (1, 2, 1, 3), "TEST",
               {"pr": [np.array([0.25, 0.5], np.float32)]})
    x = torch.tensor([[[[-1.0, 0.0, 2.0]], [[-3.0, 0.0, 1.0]]]], requires_grad=True)
    y = gm(data=x)["pr"]
    assert torch.equal(y, torch.tensor([[[[-0.25, 0.0, 2.0]], [[-1.5, 0.0, 1.0]]]]))
    y.sum().backward()
    # Caffe: dx = dy * (x > 0 ? 1 : a), so x == 0 takes the slope; da = dy * x where x <= 0.
    assert torch.equal(x.grad, torch.tensor([[[[0.25, 0.25, 1.0]], [[0.5, 0.5, 1.0]]]]))
    assert torch.equal(gm.pr.weight.grad, torch.tensor([-1.0, -3.0]))


def test_prelu_default_filler_and_shared_blob_shape():
    gm = build(layer("pr", "PReLU", ["data"], "prelu_param { channel_shared: true }"))
    assert gm.pr.weight.shape == () and gm.pr.weight.item() == 0.25


def test_scale_two_bottoms_with_bias_has_only_the_bias_blob():
    body = 'layer { name: "sc" type: "Scale" bottom: "data" bottom: "w" top: "sc" ' \
           'scale_param { bias_term: true } }\n'
    bias = np.arange(12, dtype=np.float32).reshape(3, 4)
    gm = build(body, (2, 3, 4, 5), weights={"sc": [bias]}, w=(3, 4))
    assert gm.sc.weight is None and tuple(gm.sc.bias.shape) == (3, 4)
    x, w = randn(2, 3, 4, 5), randn(3, 4, seed=1)
    out = run(gm, x, w=torch.from_numpy(w))["sc"]
    np.testing.assert_allclose(out, x * w[:, :, None] + bias[:, :, None], rtol=1e-6, atol=1e-6)


def test_scale_and_bias_default_fillers():
    gm = build(layer("sc", "Scale", ["data"], "scale_param { bias_term: true }") +
               layer("b", "Bias", ["data"], "bias_param { axis: 2 num_axes: -1 }"))
    assert torch.equal(gm.sc.weight, torch.ones(3)) and torch.equal(gm.sc.bias, torch.zeros(3))
    assert torch.equal(gm.b.bias, torch.zeros(4, 5))


def test_scale_second_bottom_must_match_the_axes():
    body = 'layer { name: "sc" type: "Scale" bottom: "data" bottom: "w" top: "sc" }\n'
    with pytest.raises(NetdefError) as e:
        build(body, (2, 3, 4, 5), w=(4,))
    assert e.value.layer == "sc" and "does not match" in e.value.message


def test_lrn_refuses_even_sizes():
    with pytest.raises(NetdefError) as e:
        build(layer("lrn", "LRN", ["data"], "lrn_param { local_size: 4 }"))
    assert e.value.layer == "lrn" and "odd" in e.value.message


# Every layer of the family, with a param or input that exercises its gradient path.
GRADIENT_NETS = [
    ("PReLU", ""), ("ELU", "elu_param { alpha: 0.5 }"), ("Sigmoid", ""), ("TanH", ""),
    ("AbsVal", ""), ("BNLL", ""), ("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
    ("Exp", "exp_param { base: 2 scale: 0.5 shift: 0.1 }"),
    ("Log", "log_param { scale: 0.1 shift: 2 }"), ("Clip", "clip_param { min: -1 max: 1 }"),
    ("Swish", ""), ("Dropout", ""), ("ReLU", "relu_param { negative_slope: 0.1 }"),
    ("LRN", "lrn_param { local_size: 3 alpha: 2 }"),
    ("LRN", "lrn_param { local_size: 3 alpha: 2 norm_region: WITHIN_CHANNEL }"),
    ("MVN", "mvn_param { across_channels: true eps: 0.1 }"), ("BatchNorm", ""),
    ("Scale", "scale_param { bias_term: true }"), ("Bias", ""),
]


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("type_, params", GRADIENT_NETS)
def test_backward_reaches_input_and_blobs(type_, params, phase):
    torch.manual_seed(0)
    gm = build(layer("l", type_, ["data"], params), (2, 3, 4, 5), phase)
    x = torch.from_numpy(randn(2, 3, 4, 5)).requires_grad_()
    y = gm(data=x)["l"]
    (y * torch.from_numpy(randn(2, 3, 4, 5, seed=1))).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in gm.l.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_threshold_has_no_gradient_like_caffe():
    gm = build(layer("t", "Threshold", ["data"], "threshold_param { threshold: 0.3 }"))
    y = gm(data=torch.from_numpy(randn(2, 3, 4, 5)).requires_grad_())["t"]
    assert not y.requires_grad

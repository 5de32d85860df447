"""SSD-branch layers (Normalize, Permute, PriorBox, DetectionOutput) on small inline nets.

The golden SSD300 and MobileNet-SSD cases pin one configuration of each layer against
real Caffe. These tests cover the rest of each layer's parameters against references
written here from the SSD branch's definitions: Normalize across_spatial and
channel_shared, Permute with a partial order, PriorBox's image size, steps, clip, flip,
variances and size truncation, and DetectionOutput's code types, per-class locations,
eta, top_k, keep_top_k, background, thresholds, ties, empty output and large candidate
sets. The DetectionOutput reference is a plain greedy loop over the candidates.
"""
import math

import numpy as np
import pytest
import torch

import netdef
from compiler.backends.summary import summarize
from tests.nets import compile_text, inputs, layer, parse_text, randn, refused


# --- Normalize ---------------------------------------------------------------------------

@pytest.mark.parametrize("across_spatial", [False, True])
@pytest.mark.parametrize("channel_shared", [False, True])
def test_normalize_divides_by_the_l2_norm_with_eps_under_the_root(across_spatial, channel_shared):
    x = randn(2, 3, 4, 5)
    scale = np.float32([2.5]).reshape(()) if channel_shared else np.float32([1.5, -2, 3])
    params = "norm_param { across_spatial: %s channel_shared: %s eps: 0.5 }" % (
        str(across_spatial).lower(), str(channel_shared).lower())
    gm = compile_text(inputs(data=(2, 3, 4, 5)) + layer("norm", "Normalize", ["data"], params),
                      {"norm": [scale]})
    y = gm(data=torch.from_numpy(x))["norm"].detach().numpy()

    x64 = x.astype(np.float64)
    axes = (1, 2, 3) if across_spatial else (1,)
    expected = x64 / np.sqrt((x64 ** 2).sum(axes, keepdims=True) + 0.5)
    expected = expected * (scale if channel_shared else scale[None, :, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_normalize_blob_is_a_scalar_when_shared_and_defaults_to_one():
    text = inputs(data=(2, 3, 4)) + layer("norm", "Normalize", ["data"])    # shared by default
    net = parse_text(text)
    _, totals = summarize(net)
    assert totals["params"] == 1
    gm = netdef.compile_net(net)
    assert gm.norm.scale.shape == () and gm.norm.scale.item() == 1
    x = randn(2, 3, 4)
    y = gm(data=torch.from_numpy(x))["norm"].detach().numpy()
    # across_spatial by default: one norm per item, eps 1e-10.
    np.testing.assert_allclose(y, x / np.sqrt((x.astype(np.float64) ** 2).sum((1, 2), keepdims=True)),
                               rtol=1e-5)


def test_normalize_scale_filler_and_gradient():
    text = inputs(data=(2, 3, 2, 2)) + layer(
        "norm", "Normalize", ["data"],
        'norm_param { across_spatial: false channel_shared: false '
        'scale_filler { type: "constant" value: 20 } }')
    gm = compile_text(text).double()
    assert torch.equal(gm.norm.scale, torch.full((3,), 20.0, dtype=torch.float64))
    x = torch.from_numpy(randn(2, 3, 2, 2).astype(np.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: gm(data=t)["norm"], (x,))


@pytest.mark.parametrize("across_spatial", [False, True])
def test_normalize_backward_is_caffes_which_scales_after_projecting(across_spatial):
    x, g = randn(2, 3, 2, 2, seed=1).astype(np.float64), randn(2, 3, 2, 2, seed=2).astype(np.float64)
    scale = np.float32([1.5, -2, 3])
    gm = compile_text(inputs(data=(2, 3, 2, 2)) + layer(
        "norm", "Normalize", ["data"], "norm_param { across_spatial: %s channel_shared: false eps: 0.5 }"
        % str(across_spatial).lower()), {"norm": [scale]}).double()
    xt = torch.from_numpy(x).requires_grad_()
    gm(data=xt)["norm"].backward(torch.from_numpy(g))

    axes = (1, 2, 3) if across_spatial else (1,)
    norm = np.sqrt((x ** 2).sum(axes, keepdims=True) + 0.5)
    s = scale.astype(np.float64)[None, :, None, None]
    caffe = s * (g - x * (x * g).sum(axes, keepdims=True) / norm ** 2) / norm
    exact = s * g / norm - x * (s * x * g).sum(axes, keepdims=True) / norm ** 3
    np.testing.assert_allclose(xt.grad.numpy(), caffe, rtol=1e-10)
    assert not np.allclose(caffe, exact)
    np.testing.assert_allclose(gm.norm.scale.grad.numpy(), (x / norm * g).sum((0, 2, 3)), rtol=1e-10)


def test_normalize_refuses_a_one_axis_bottom():
    e = refused(inputs(data=(6,)) + layer("norm", "Normalize", ["data"]))
    assert e.layer == "norm" and "at least 2 axes" in e.message


# --- Permute -----------------------------------------------------------------------------

def test_permute_appends_the_axes_the_order_leaves_out():
    x = randn(2, 3, 4, 5)
    gm = compile_text(inputs(data=(2, 3, 4, 5)) +
                      layer("perm", "Permute", ["data"], "permute_param { order: 0 order: 3 }") +
                      layer("flat", "Flatten", ["perm"]))
    out = gm(data=torch.from_numpy(x))
    assert out["perm"].shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(out["flat"].numpy(), x.transpose(0, 3, 1, 2).reshape(2, -1))


@pytest.mark.parametrize("order, message", [
    ("order: 0 order: 4", "out of range"), ("order: 1 order: 1", "repeats an axis")])
def test_permute_refuses_bad_orders(order, message):
    e = refused(inputs(data=(2, 3, 4, 5)) +
                layer("perm", "Permute", ["data"], "permute_param { %s }" % order))
    assert e.layer == "perm" and message in e.message


def test_permute_is_never_in_place():
    e = refused(inputs(data=(2, 3, 4, 5)) +
                layer("perm", "Permute", ["data"], "permute_param { order: 0 order: 2 }", tops=["data"]))
    assert e.layer == "perm" and "in-place" in e.message


# --- PriorBox ----------------------------------------------------------------------------

def prior_box_reference(fh, fw, ih, iw, min_sizes, max_sizes=(), ratios=(), flip=True, clip=False,
                        variance=(0.1,), step=None, offset=0.5):
    """The SSD branch's PriorBox loops, in float64."""
    ars = [1.0]
    for ar in ratios:
        if all(abs(ar - r) >= 1e-6 for r in ars):
            ars += [ar, 1 / ar] if flip else [ar]
    step_h, step_w = step or (ih / fh, iw / fw)
    boxes = []
    for h in range(fh):
        for w in range(fw):
            cx, cy = (w + offset) * step_w, (h + offset) * step_h
            for s, min_size in enumerate(min_sizes):
                lo = int(min_size)
                sides = [(lo, lo)]
                if max_sizes:
                    sides.append((math.sqrt(lo * int(max_sizes[s])),) * 2)
                sides += [(lo * math.sqrt(ar), lo / math.sqrt(ar)) for ar in ars if abs(ar - 1) >= 1e-6]
                for bw, bh in sides:
                    boxes += [(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih]
    boxes = np.array(boxes)
    if clip:
        boxes = boxes.clip(0, 1)
    variances = np.tile(variance, len(boxes) // len(variance))
    return np.stack([boxes, variances])[None]


def prior_box(params, feature=(1, 2, 3, 4), image=(1, 3, 30, 45)):
    gm = compile_text(inputs(fmap=feature, image=image) + layer("prior", "PriorBox", ["fmap", "image"],
                                                                "prior_box_param { %s }" % params))
    return gm(fmap=torch.zeros(feature), image=torch.zeros(image))["prior"].numpy()


@pytest.mark.parametrize("params, kw", [
    # Steps from the image size over the feature map size (30/3, 45/4), default variance.
    ("min_size: 8", dict(min_sizes=[8])),
    # Two min sizes with their max sizes, ratios 2 and 3 flipped; 1.0 and a repeated 2 are
    # dropped; non-integer sizes are truncated.
    ("min_size: 8.7 max_size: 20.9 min_size: 12 max_size: 15 aspect_ratio: 2 aspect_ratio: 1 "
     "aspect_ratio: 2 aspect_ratio: 3 variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
     dict(min_sizes=[8.7, 12], max_sizes=[20.9, 15], ratios=[2, 3], variance=(0.1, 0.1, 0.2, 0.2))),
    ("min_size: 10 aspect_ratio: 2 flip: false clip: true step: 7 offset: 0.25 variance: 0.3",
     dict(min_sizes=[10], ratios=[2], flip=False, clip=True, step=(7, 7), offset=0.25, variance=(0.3,))),
    ("min_size: 10 step_h: 6 step_w: 9 img_h: 40 img_w: 50",
     dict(min_sizes=[10], step=(6, 9), ih=40, iw=50)),
    ("min_size: 10 img_size: 64", dict(min_sizes=[10], ih=64, iw=64)),
])
def test_prior_box_matches_the_ssd_loops(params, kw):
    ih, iw = kw.pop("ih", 30), kw.pop("iw", 45)
    out = prior_box(params)
    expected = prior_box_reference(3, 4, ih, iw, **kw)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_prior_box_follows_the_tensors_sizes_and_ignores_the_batch():
    gm = compile_text(inputs(fmap=(1, 2, 3, 4), image=(1, 3, 30, 45)) +
                      layer("prior", "PriorBox", ["fmap", "image"], "prior_box_param { min_size: 8 }"))
    out = gm(fmap=torch.zeros(2, 2, 5, 6), image=torch.zeros(2, 3, 50, 60))["prior"].numpy()
    np.testing.assert_allclose(out, prior_box_reference(5, 6, 50, 60, [8]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("params, message", [
    ("aspect_ratio: 2", "needs a min_size"),
    ("min_size: 0", "min_size must be positive"),
    ("min_size: 10 max_size: 10", "greater than its min_size"),
    ("min_size: 10 min_size: 20 max_size: 30", "2 min_size values"),
    ("min_size: 10 aspect_ratio: -2", "aspect_ratio must be positive"),
    ("min_size: 10 variance: 0.1 variance: 0.2", "give 1 or 4"),
    ("min_size: 10 variance: 0", "variance must be positive"),
    ("min_size: 10 img_size: 300 img_h: 300 img_w: 300", "either img_size or img_h/img_w"),
    ("min_size: 10 img_h: 300", "img_h and img_w must be positive"),
    ("min_size: 10 step: 8 step_w: 8", "either step or step_h/step_w"),
])
def test_prior_box_refuses_what_caffe_refuses(params, message):
    e = refused(inputs(fmap=(1, 2, 3, 4), image=(1, 3, 30, 45)) +
                layer("prior", "PriorBox", ["fmap", "image"], "prior_box_param { %s }" % params))
    assert e.layer == "prior" and message in e.message, e.message


# --- DetectionOutput ---------------------------------------------------------------------

CORNER, CENTER_SIZE, CORNER_SIZE = "CORNER", "CENTER_SIZE", "CORNER_SIZE"


def f32(x):
    return np.float32(x)


def decode_reference(prior, var, loc, code, in_target):
    """DecodeBBox of one box, with float32 steps (exp rounded from double, as glibc's expf)."""
    v = [f32(1)] * 4 if in_target else var
    d = [v[k] * loc[k] for k in range(4)]
    if code == CORNER:
        return [prior[k] + d[k] for k in range(4)]
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code == CORNER_SIZE:
        return [prior[0] + d[0] * pw, prior[1] + d[1] * ph, prior[2] + d[2] * pw, prior[3] + d[3] * ph]
    cx = d[0] * pw + (prior[0] + prior[2]) / f32(2)
    cy = d[1] * ph + (prior[1] + prior[3]) / f32(2)
    w = f32(math.exp(float(d[2]))) * pw
    h = f32(math.exp(float(d[3]))) * ph
    return [f32(float(cx) - float(w) / 2), f32(float(cy) - float(h) / 2),
            f32(float(cx) + float(w) / 2), f32(float(cy) + float(h) / 2)]


def size_reference(b):
    return f32(0) if b[2] < b[0] or b[3] < b[1] else (b[2] - b[0]) * (b[3] - b[1])


def overlap_reference(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return f32(0)
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if not (w > 0 and h > 0):
        return f32(0)
    inter = w * h
    return inter / (size_reference(a) + size_reference(b) - inter)


def detection_reference(loc, conf, prior, classes, share=True, background=0, code=CORNER,
                        in_target=False, keep_top_k=-1, threshold=-np.finfo(np.float32).max,
                        nms=0.3, eta=1.0, top_k=-1):
    """The SSD branch's DetectionOutput: a greedy loop over candidates, per class."""
    num, priors = loc.shape[0], prior.shape[2] // 4
    loc_classes = 1 if share else classes
    loc = loc.reshape(num, priors, loc_classes, 4)
    conf = conf.reshape(num, priors, classes)
    boxes_p, vars_p = prior[0, 0].reshape(priors, 4), prior[0, 1].reshape(priors, 4)
    rows = []
    for i in range(num):
        kept = {}
        for c in range(classes):
            if c == background:
                continue
            lc = 0 if share else c
            boxes = [decode_reference(boxes_p[p], vars_p[p], loc[i, p, lc], code, in_target)
                     for p in range(priors)]
            order = sorted((p for p in range(priors) if conf[i, p, c] > f32(threshold)),
                           key=lambda p: -conf[i, p, c])            # sorted() is stable
            if top_k > -1:
                order = order[:top_k]
            adaptive, keep = f32(nms), []
            for p in order:
                if all(overlap_reference(boxes[p], boxes[q]) <= adaptive for q in keep):
                    keep.append(p)
                    if eta < 1 and adaptive > 0.5:
                        adaptive = adaptive * f32(eta)
            kept[c] = [(p, boxes[p]) for p in keep]
        dets = [(conf[i, p, c], c, p, box) for c in sorted(kept) for p, box in kept[c]]
        if -1 < keep_top_k < len(dets):
            dets = sorted(dets, key=lambda d: -d[0])[:keep_top_k]
            dets = sorted(dets, key=lambda d: d[1])
        rows += [[i, c, score] + list(box) for score, c, p, box in dets]
    if not rows:
        rows = [[i] + [-1] * 6 for i in range(num)]
    return np.array(rows, dtype=np.float32)[None, None]


def random_priors(priors, seed, variance=(0.1, 0.1, 0.2, 0.2)):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.1, 0.9, (priors, 2))
    side = rng.uniform(0.05, 0.4, (priors, 2))
    boxes = np.concatenate([centre - side / 2, centre + side / 2], axis=1).astype(np.float32)
    return np.stack([boxes.reshape(-1), np.tile(np.float32(variance), priors)])[None]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def detection_net(num, priors, classes, params, share=True):
    loc_classes = 1 if share else classes
    text = inputs(loc=(num, priors * loc_classes * 4), conf=(num, priors * classes),
                  prior=(1, 2, priors * 4)) + layer(
        "det", "DetectionOutput", ["loc", "conf", "prior"],
        "detection_output_param { num_classes: %d share_location: %s %s }"
        % (classes, str(share).lower(), params))
    return compile_text(text)


def detect(gm, loc, conf, prior):
    out = gm(loc=torch.from_numpy(loc), conf=torch.from_numpy(conf), prior=torch.from_numpy(prior))
    return out["det"].numpy()


def test_detection_output_by_hand():
    # CORNER with the variance in the target and zero offsets: the boxes are the priors.
    a, b, c = [0, 0, 0.5, 0.5], [0.05, 0.05, 0.55, 0.55], [0.6, 0.6, 0.9, 0.9]   # IoU(a, b) 0.68
    prior = np.float32([a + b + c, [0.1] * 12])[None]
    conf = np.float32([[0.0, 0.9, 0.1], [0.2, 0.8, 0.7], [0.0, 0.25, 0.75]]).reshape(1, -1)
    params = ("code_type: CORNER variance_encoded_in_target: true confidence_threshold: 0.25 "
              "nms_param { nms_threshold: 0.45 } keep_top_k: %d")
    rows = detect(detection_net(1, 3, 3, params % -1), np.zeros((1, 12), np.float32), conf, prior)
    # Class 1 loses b to a, and c's score is not above the threshold; class 2 keeps c and b.
    np.testing.assert_array_equal(rows[0, 0], np.float32([[0, 1, 0.9] + a, [0, 2, 0.75] + c,
                                                          [0, 2, 0.7] + b]))
    # keep_top_k takes the 2 best of all classes, then lists them by label again.
    rows = detect(detection_net(1, 3, 3, params % 2), np.zeros((1, 12), np.float32), conf, prior)
    np.testing.assert_array_equal(rows[0, 0], np.float32([[0, 1, 0.9] + a, [0, 2, 0.75] + c]))


def test_detection_output_eta_lowers_the_threshold_after_each_kept_box():
    a, b = [0, 0, 0.5, 0.5], [0.2, 0, 0.7, 0.5]                      # IoU 0.43
    prior = np.float32([a + b, [0.1] * 8])[None]
    conf = np.float32([[0.1, 0.9], [0.2, 0.8]]).reshape(1, -1)
    loc = np.zeros((1, 8), np.float32)
    params = "code_type: CORNER variance_encoded_in_target: true nms_param { nms_threshold: 0.6 %s }"
    assert detect(detection_net(1, 2, 2, params % ""), loc, conf, prior).shape == (1, 1, 2, 7)
    # After a is kept, 0.6 > 0.5 becomes 0.6 * 0.5 = 0.3 < 0.43: b goes.
    assert detect(detection_net(1, 2, 2, params % "eta: 0.5"), loc, conf, prior).shape == (1, 1, 1, 7)


def test_detection_output_without_detections_gives_one_row_of_minus_one_per_image():
    prior = random_priors(4, seed=1)
    conf = softmax(randn(2, 4, 3))
    rows = detect(detection_net(2, 4, 3, "confidence_threshold: 0.99"), randn(2, 16),
                  conf.reshape(2, -1), prior)
    np.testing.assert_array_equal(rows, np.float32([[[[0] + [-1] * 6, [1] + [-1] * 6]]]))


@pytest.mark.parametrize("params, kw, share", [
    ("nms_param { nms_threshold: 0.45 top_k: 20 } keep_top_k: 30 confidence_threshold: 0.05",
     dict(nms=0.45, top_k=20, keep_top_k=30, threshold=0.05), True),
    ("code_type: CORNER nms_param { nms_threshold: 0.6 eta: 0.8 } confidence_threshold: 0.1",
     dict(code=CORNER, nms=0.6, eta=0.8, threshold=0.1), True),
    ("code_type: CORNER_SIZE variance_encoded_in_target: true "
     "nms_param { nms_threshold: 0.7 eta: 0.9 } background_label_id: 2 keep_top_k: 25",
     dict(code=CORNER_SIZE, in_target=True, nms=0.7, eta=0.9, background=2, keep_top_k=25), False),
    ("code_type: CENTER_SIZE variance_encoded_in_target: true background_label_id: -1 "
     "nms_param { nms_threshold: 0.5 top_k: 5 }",
     dict(code=CENTER_SIZE, in_target=True, background=-1, nms=0.5, top_k=5), False),
])
def test_detection_output_matches_the_greedy_loop(params, kw, share):
    num, priors, classes = 2, 60, 4
    loc = randn(num, priors * (1 if share else classes) * 4, seed=2)
    conf = softmax(2 * randn(num, priors, classes, seed=3)).reshape(num, -1)
    prior = random_priors(priors, seed=4)
    out = detect(detection_net(num, priors, classes, params, share), loc, conf, prior)
    expected = detection_reference(loc, conf, prior, classes, share=share, **kw)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_detection_output_equal_scores_stay_in_prior_order():
    # Four identical priors and scores: NMS keeps the first prior of the tie only when
    # the earlier index wins, as Caffe's stable_sort makes it.
    prior = np.float32([[0.1, 0.1, 0.4, 0.4] * 4, [0.1] * 16])[None]
    conf = np.float32([[0.5, 0.5]] * 4).reshape(1, -1)
    loc = np.float32([[0, 0, 0, 0], [0.01, 0, 0, 0], [0.02, 0, 0, 0], [5, 5, 5, 5]]).reshape(1, -1)
    rows = detect(detection_net(1, 4, 2, "code_type: CORNER nms_param { nms_threshold: 0.45 }"),
                  loc, conf, prior)
    np.testing.assert_allclose(rows[0, 0, :, 3], [0.1, 0.6])        # priors 0 and 3


def test_detection_output_many_candidates_span_several_blocks():
    # 1500 candidates of one class and no top_k: the NMS runs in blocks of 512, and eta
    # lowers the threshold past the first block (0.6 * 0.9997^k stays above 0.5 to k = 608).
    num, priors, classes = 1, 1500, 2
    loc = randn(num, priors * 4, seed=5)
    conf = softmax(randn(num, priors, classes, seed=6)).reshape(num, -1)
    prior = random_priors(priors, seed=7)
    params = "nms_param { nms_threshold: 0.6 eta: 0.9997 }"
    out = detect(detection_net(num, priors, classes, params), loc, conf, prior)
    expected = detection_reference(loc, conf, prior, classes, nms=0.6, eta=0.9997)
    assert 100 < out.shape[2] < priors
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("params, message", [
    ("", "needs num_classes"),
    ("num_classes: 3 background_label_id: -1", "makes Caffe abort"),
    ("num_classes: 3 nms_param { eta: 0 }", "eta must be in (0, 1]"),
    ("num_classes: 3 nms_param { nms_threshold: -0.1 }", "nms_threshold must be non-negative"),
    ("num_classes: 4", "confidence values per item"),
    ("num_classes: 3 share_location: false", "location predictions per item"),
])
def test_detection_output_refuses_what_caffe_refuses(params, message):
    e = refused(inputs(loc=(1, 16), conf=(1, 12), prior=(1, 2, 16)) + layer(
        "det", "DetectionOutput", ["loc", "conf", "prior"], "detection_output_param { %s }" % params))
    assert e.layer == "det" and message in e.message, e.message


# --- A small SSD head --------------------------------------------------------------------

CONV = ('convolution_param { num_output: %d kernel_size: 3 pad: 1 stride: %d '
        'weight_filler { type: "gaussian" std: 0.3 } }')
HEAD = inputs(data=(1, 3, 16, 16)) + (
    layer("conv", "Convolution", ["data"], CONV % (8, 2)) +
    layer("norm", "Normalize", ["conv"], "norm_param { across_spatial: false channel_shared: false "
                                         "scale_filler { type: \"constant\" value: 20 } }") +
    layer("loc", "Convolution", ["norm"], CONV % (16, 1)) +
    layer("loc_perm", "Permute", ["loc"], "permute_param { order: 0 order: 2 order: 3 order: 1 }") +
    layer("loc_flat", "Flatten", ["loc_perm"]) +
    layer("conf", "Convolution", ["norm"], CONV % (12, 1)) +
    layer("conf_perm", "Permute", ["conf"], "permute_param { order: 0 order: 2 order: 3 order: 1 }") +
    layer("conf_flat", "Flatten", ["conf_perm"]) +
    layer("prior", "PriorBox", ["norm", "data"], "prior_box_param { min_size: 4 max_size: 8 aspect_ratio: 2 "
                                                 "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }") +
    layer("conf_reshape", "Reshape", ["conf_flat"], "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }") +
    layer("conf_softmax", "Softmax", ["conf_reshape"], "softmax_param { axis: 2 }") +
    layer("conf_prob", "Flatten", ["conf_softmax"]) +
    layer("det", "DetectionOutput", ["loc_flat", "conf_prob", "prior"],
          "detection_output_param { num_classes: 3 code_type: CENTER_SIZE keep_top_k: 20 "
          "confidence_threshold: 0.3 nms_param { nms_threshold: 0.45 top_k: 50 } }"))


def test_ssd_head_declares_one_row_and_runs_any_batch():
    net = parse_text(HEAD)
    _, totals = summarize(net)
    # Caffe declares (1, 1, 1, 7) until a forward pass counts the detections.
    assert totals["outputs"] == {"det": [1, 1, 1, 7]}
    assert net.shape("prior") == (1, 2, 8 * 8 * 4 * 4)
    torch.manual_seed(0)
    gm = netdef.compile_net(net, outputs="all")
    x = torch.from_numpy(randn(2, 3, 16, 16, seed=8))
    with torch.no_grad():
        out = gm(data=x)
    rows = out["det"].numpy()[0, 0]
    assert out["prior"].shape == (1, 2, 1024)
    assert len(rows) and set(rows[:, 0]) <= {0, 1} and set(rows[:, 1]) <= {1, 2}
    # The same rows as the reference from the head's own intermediate blobs.
    expected = detection_reference(out["loc_flat"].numpy(), out["conf_prob"].numpy(), out["prior"].numpy(),
                                   3, code=CENTER_SIZE, nms=0.45, top_k=50, keep_top_k=20, threshold=0.3)
    np.testing.assert_array_equal(out["det"].numpy(), expected)

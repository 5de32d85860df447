"""HingeLoss, MultinomialLogisticLoss and InfogainLoss against their formulas in BVLC
Caffe's sources (hinge_loss_layer.cpp, multinomial_logistic_loss_layer.cpp,
infogain_loss_layer.cpp), computed here in float64 numpy, gradients included; their
checks as located errors; and training a net with them."""
import numpy as np
import pytest
import torch

import netdef
from compiler.backends import draw, dsl_writer
from compiler.backends.summary import format_summary
from compiler.frontends import dsl
from compiler.layers.base import constructor_args
from compiler.layers.loss import loss_weight
from compiler.proto import caffe_pb2
from netdef.cli import main
from netdef.training.feed import ArrayFeed
from netdef.training.solver import Solver
from tests.nets import compile_text, inputs, layer, parse_text, randn, refused
from tests.test_export import written_module

LOG_THRESHOLD = np.float32(1e-20)      # kLOG_THRESHOLD


def leaf(a):
    return torch.from_numpy(a).requires_grad_()


def softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss(norm):
    x = randn(3, 2, 2, 1)                  # 3 items of 4 scores (Caffe's dim = count / num)
    label = np.array([1, 3, 0], np.float32)
    x[0, 0, 0, 0] = -1.0                   # a hinge exactly 0: no gradient there (sign(0))
    gm = compile_text(inputs(data=(3, 2, 2, 1), label=(3,)) + layer(
        "loss", "HingeLoss", ["data", "label"], "hinge_loss_param { norm: %s }" % norm))
    xt, lt = leaf(x), leaf(label)
    loss = gm(data=xt, label=lt)["loss"]
    loss.backward()

    flat = x.reshape(3, 4).astype(np.float64)
    t = np.ones_like(flat)
    t[np.arange(3), label.astype(int)] = -1
    hinge = np.maximum(0, 1 + t * flat)
    assert hinge[0, 0] == 0
    if norm == "L1":
        expected, grad = hinge.sum() / 3, np.sign(t * hinge) / 3
    else:
        expected, grad = (hinge ** 2).sum() / 3, 2 * t * hinge / 3
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    np.testing.assert_allclose(xt.grad.numpy().reshape(3, 4), grad, rtol=1e-6)
    assert grad[0, 0] == 0 and lt.grad is None


def test_hinge_loss_reads_the_first_num_labels_as_caffe_does():
    # label[i] for item i: of a (2, 3) label Caffe reads the first two values.
    x = randn(2, 5)
    label = np.array([[4, 0, 1], [2, 2, 2]], np.float32)
    gm = compile_text(inputs(data=(2, 5), label=(2, 3)) + layer("loss", "HingeLoss", ["data", "label"]))
    loss = gm(data=torch.from_numpy(x), label=torch.from_numpy(label))["loss"]
    t = np.ones((2, 5))
    t[0, 4] = t[1, 0] = -1
    np.testing.assert_allclose(loss.item(), np.maximum(0, 1 + t * x).sum() / 2, rtol=1e-6)


def test_multinomial_logistic_loss_clamps_and_keeps_caffes_gradient():
    p = softmax(randn(4, 3, seed=2).astype(np.float64), 1).astype(np.float32)
    p[2] = [0.0, 1.0, 0.0]                 # label 0 has probability 0: kLOG_THRESHOLD bites
    p[3] = [0.5, 0.5, 1e-30]               # and below it
    label = np.array([1, 2, 0, 2], np.float32).reshape(4, 1, 1, 1)
    gm = compile_text(inputs(prob=(4, 3), label=(4, 1, 1, 1)) + layer(
        "loss", "MultinomialLogisticLoss", ["prob", "label"],
        "loss_param { ignore_label: 2 normalization: NONE }"))     # Caffe reads neither
    pt = leaf(p)
    loss = gm(prob=pt, label=torch.from_numpy(label))["loss"]
    loss.backward()

    rows, cols = np.arange(4), label.reshape(4).astype(int)
    clamped = np.maximum(p[rows, cols], LOG_THRESHOLD).astype(np.float64)
    np.testing.assert_allclose(loss.item(), -np.log(clamped).sum() / 4, rtol=1e-6)
    grad = np.zeros((4, 3))
    grad[rows, cols] = -1 / (4 * clamped)
    np.testing.assert_allclose(pt.grad.numpy(), grad, rtol=1e-6)
    assert np.isfinite(loss.item()) and pt.grad[2, 0] == pytest.approx(-1 / (4 * 1e-20), rel=1e-6)


def infogain_expected(x, label, h, axis, ignore_label, mode):
    """Caffe's forward and backward, in float64 from the formulas of infogain_loss_layer.cpp."""
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    classes = x.shape[-1]
    p = softmax(x, -1).reshape(-1, classes)
    label = label.reshape(-1).astype(int)
    keep = label != ignore_label if ignore_label is not None else np.ones(label.shape, bool)
    rows = h.astype(np.float64)[np.where(keep, label, 0)]
    per_position = -(rows * np.log(np.maximum(p, LOG_THRESHOLD))).sum(1)
    outer = int(np.prod(np.moveaxis(np.empty(x.shape), -1, axis).shape[:axis]))
    divisor = max(1, {"VALID": keep.sum(), "FULL": label.size, "BATCH_SIZE": outer, "NONE": 1}[mode])
    grad = (p * rows.sum(1, keepdims=True) - rows) * keep[:, None] / divisor
    grad = np.moveaxis(grad.reshape(x.shape), -1, axis)
    return per_position[keep].sum() / divisor, grad, np.moveaxis(p.reshape(x.shape), -1, axis)


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
def test_infogain_loss_from_a_bottom_along_an_axis_with_ignore_label(mode):
    x = randn(2, 3, 4) * 3                 # 3 classes along axis 1, 2x4 positions
    x[0, :, 1] = [40.0, -40.0, 0.0]        # a probability below 1e-20: Caffe clamps its log
    label = np.array([[0, 1, 2, 9], [2, 2, 1, 0]], np.float32)     # 9 is ignored
    h = np.abs(randn(3, 3, seed=3)) + np.eye(3, dtype=np.float32)
    gm = compile_text(inputs(data=(2, 3, 4), label=(2, 4), H=(1, 1, 3, 3)) + layer(
        "loss", "InfogainLoss", ["data", "label", "H"],
        "loss_weight: 1 loss_weight: 0 loss_param { ignore_label: 9 normalization: %s }" % mode,
        tops=["loss", "prob"]))
    xt, ht = leaf(x), leaf(h.reshape(1, 1, 3, 3))
    out = gm(data=xt, label=torch.from_numpy(label), H=ht)
    out["loss"].backward()

    expected, grad, prob = infogain_expected(x, label, h, 1, 9, mode)
    np.testing.assert_allclose(out["loss"].item(), expected, rtol=1e-5)
    np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["prob"].detach().numpy(), prob, rtol=1e-5, atol=1e-7)
    assert ht.grad is None                 # Caffe refuses to backpropagate to H


def blob_file(path, values, legacy):
    blob = caffe_pb2.BlobProto()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = 1, 1, *values.shape
        blob.data.extend(values.ravel().tolist())
    else:
        blob.shape.dim.extend(values.shape)
        blob.double_data.extend(values.ravel().tolist())
    path.write_bytes(blob.SerializeToString())


@pytest.mark.parametrize("legacy", [True, False])
def test_infogain_loss_reads_its_matrix_from_source_relative_to_the_working_directory(
        tmp_path, monkeypatch, legacy):
    monkeypatch.chdir(tmp_path)
    h = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.25], [0.1, 0.0, 0.0, 1.0]],
                 np.float32)
    blob_file(tmp_path / "H.binaryproto", h, legacy)
    x, label = randn(5, 4), np.array([0, 1, 2, 3, 1], np.float32)
    gm = compile_text(inputs(data=(5, 4), label=(5,)) + layer(
        "loss", "InfogainLoss", ["data", "label"], 'infogain_loss_param { source: "H.binaryproto" axis: -1 }'))
    xt = leaf(x)
    loss = gm(data=xt, label=torch.from_numpy(label))["loss"]
    loss.backward()
    expected, grad, _ = infogain_expected(x, label, h, 1, None, "VALID")
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-4, atol=1e-7)
    # The matrix is no blob (Caffe's caffemodel holds none for this layer) and no state:
    # the module rebuilds from its constructor arguments alone, as an exported file does.
    module = gm.loss
    assert not list(module.parameters()) and not module.state_dict()
    again = type(module)(**constructor_args(module))
    assert torch.equal(again.infogain, torch.from_numpy(h))
    # The standalone Python file carries it too.
    exported = written_module(gm, tmp_path)
    with torch.no_grad():
        assert torch.equal(exported(data=torch.from_numpy(x), label=torch.from_numpy(label))["loss"], loss)


@pytest.mark.parametrize("extra, message", [
    ("", "needs infogain_loss_param.source"),
    ('infogain_loss_param { source: "missing.binaryproto" }', "missing.binaryproto"),
    ('infogain_loss_param { source: "small.binaryproto" }', "has 4 values; the 3 classes need 3x3"),
    ('infogain_loss_param { source: "garbage.binaryproto" }', "cannot read the infogain matrix"),
    ('infogain_loss_param { source: "small.binaryproto" } loss_param { normalize: true }',
     "refuses loss_param.normalize"),
])
def test_infogain_loss_checks_are_located(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    blob_file(tmp_path / "small.binaryproto", np.eye(2, dtype=np.float32), legacy=True)
    (tmp_path / "garbage.binaryproto").write_bytes(b"\xff\xff\xff")
    e = refused(inputs(data=(2, 3), label=(2,)) + layer("loss", "InfogainLoss", ["data", "label"], extra))
    assert e.layer == "loss" and message in str(e)


@pytest.mark.parametrize("text, message", [
    (inputs(data=(2, 3), label=(2,), H=(2, 2)) + layer("l", "InfogainLoss", ["data", "label", "H"]),
     "the infogain matrix (bottom 3) has 4 values"),
    (inputs(data=(2, 3, 2), label=(2,), H=(3, 3)) + layer("l", "InfogainLoss", ["data", "label", "H"]),
     "2 labels for 4 predictions"),
    (inputs(data=(2, 3), label=(2, 2)) + layer("l", "MultinomialLogisticLoss", ["data", "label"]),
     "the label must hold one value per item"),
    (inputs(data=(2, 3, 1, 1, 1), label=(2,)) + layer("l", "MultinomialLogisticLoss", ["data", "label"]),
     "MultinomialLogisticLoss takes blobs of at most 4 axes"),
    (inputs(data=(2, 3, 1, 1, 1), label=(2,)) + layer("l", "HingeLoss", ["data", "label"]),
     "HingeLoss takes blobs of at most 4 axes"),
    (inputs(data=(2, 3), label=(3,)) + layer("l", "HingeLoss", ["data", "label"]),
     "the same first dimension"),
])
def test_shape_checks_are_located(text, message):
    e = refused(text)
    assert e.layer == "l" and message in str(e)


LOSSES = inputs(data=(4, 3), label=(4,), H=(3, 3)) + "".join([
    layer("hinge", "HingeLoss", ["data", "label"], "hinge_loss_param { norm: L2 }"),
    layer("prob", "Softmax", ["data"]),
    layer("mlr", "MultinomialLogisticLoss", ["prob", "label"]),
    layer("info", "InfogainLoss", ["data", "label", "H"], "infogain_loss_param { axis: 1 }"),
])


def test_summary_draw_and_convert():
    net = parse_text(LOSSES)
    assert all(name in format_summary(net) for name in ("hinge", "mlr", "info"))
    assert {n["name"] for n in draw.build_view(net)["nodes"]} >= {"hinge", "mlr", "info"}
    params = [l.param for l in net.layers]
    text = dsl_writer.to_dsl("t", params)
    assert "HingeLoss(data, label, norm=L2)" in text, text
    assert list(dsl.load_proto("t.net", text=text).layer) == params


TRAIN_NET = '''name: "losses"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 6 dim: 5 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 6 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "hinge" type: "HingeLoss" bottom: "fc" bottom: "label" }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "mlr" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" loss_weight: 0.5 }
layer { name: "info" type: "InfogainLoss" bottom: "fc" bottom: "label" top: "info"
        infogain_loss_param { source: "H.binaryproto" } }
'''

SOLVER = '''net: "net.prototxt"
base_lr: 0.1
lr_policy: "fixed"
max_iter: 20
snapshot: 0
snapshot_prefix: "snap"
random_seed: 1
display: 0
'''


def test_netdef_train_learns_with_the_three_losses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(TRAIN_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    blob_file(tmp_path / "H.binaryproto", np.eye(3, dtype=np.float32) + 0.1, legacy=True)
    data = randn(20, 6, 5)
    label = np.random.default_rng(1).integers(0, 3, (20, 6)).astype(np.float32)
    data[np.arange(20)[:, None], np.arange(6), label.astype(int)] += 2       # learnable
    np.savez(tmp_path / "feed.npz", data=data, label=label)
    feed = ArrayFeed(dict(np.load("feed.npz")))
    solver = Solver("solver.prototxt", feed=feed)
    losses = solver.step(20)
    assert losses[-1] < 0.7 * losses[0], losses
    # Only the fc's blobs learn; the infogain matrix is no parameter.
    assert [(e.holders, e.lr_mult) for e in solver.params] == [([("fc", 0)], 1), ([("fc", 1)], 1)]
    assert main(["train", "solver.prototxt", "--feed", "feed.npz"]) == 0
    assert (tmp_path / "snap_iter_20.caffemodel").is_file()


def test_a_loss_weight_on_a_loss_layer_without_tops_weighs_its_automatic_top():
    # Caffe checks the loss weights after AutoTopBlobs gave the layer its top.
    net = parse_text(inputs(data=(2, 3), label=(2,)) + layer(
        "loss", "HingeLoss", ["data", "label"], "loss_weight: 0.5", tops=[]))
    assert loss_weight(net.layer("loss")) == [0.5]
    e = refused(inputs(data=(2, 3), label=(2,)) + layer(
        "loss", "HingeLoss", ["data", "label"], "loss_weight: 0.5 loss_weight: 1", tops=[]))
    assert e.layer == "loss" and "2 loss_weight values for 1 tops" in e.message

"""Caffe's solver arithmetic where no golden trace covers it, against a plain numpy
rendering of Caffe's code on a net whose gradient is known in closed form: an
InnerProduct into an EuclideanLoss with a loss weight (loss = w/2N * |xW' + b - y|^2)."""
import numpy as np
import pytest

from compiler.proto import caffe_pb2
from netdef.training import lr_policies
from netdef.training.feed import ArrayFeed
from netdef.training.solver import Solver

NET = '''name: "lin"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" loss_weight: 0.5 }
'''


def gradients(w, b, x, y):
    n = x.shape[0]
    r = x @ w.T + b - y
    return 0.5 * float((r * r).sum()) / n / 2, 0.5 * r.T @ x / n, 0.5 * r.sum(0) / n


def make(tmp_path, monkeypatch, solver_text, passes):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nmax_iter: 4\nsnapshot_after_train: false\n'
                                              + solver_text)
    rng = np.random.default_rng(5)
    feed = {"x": rng.standard_normal((passes, 2, 3)).astype(np.float32),
            "y": rng.standard_normal((passes, 2, 2)).astype(np.float32)}
    solver = Solver("solver.prototxt", feed=ArrayFeed(feed))
    w = solver.module.ip.weight.detach().numpy().astype(np.float64).copy()
    b = solver.module.ip.bias.detach().numpy().astype(np.float64).copy()
    return solver, feed, w, b


def test_sgd_iter_size_clip_l1_and_multipliers(tmp_path, monkeypatch):
    solver, feed, w, b = make(tmp_path, monkeypatch, 'base_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.01\n'
                              'regularization_type: "L1"\nlr_policy: "fixed"\niter_size: 2\n'
                              'clip_gradients: 0.5\n', 8)
    losses = solver.step(4)
    hw, hb = np.zeros_like(w), np.zeros_like(b)
    for k in range(4):
        gw, gb, loss = np.zeros_like(w), np.zeros_like(b), 0.0
        for j in (2 * k, 2 * k + 1):                       # iter_size passes accumulate
            l, dw, db = gradients(w, b, feed["x"][j].astype(np.float64), feed["y"][j].astype(np.float64))
            gw, gb, loss = gw + dw, gb + db, loss + l
        assert losses[k] == pytest.approx(loss / 2, rel=1e-5)
        norm = np.sqrt((gw * gw).sum() + (gb * gb).sum())  # clipped before normalizing
        if norm > 0.5:
            gw, gb = gw * 0.5 / norm, gb * 0.5 / norm
        gw, gb = gw / 2, gb / 2
        gw = gw + 0.01 * np.sign(w)                        # L1, decay_mult 1; the bias has 0
        hw, hb = 0.9 * hw + 0.1 * gw, 0.9 * hb + 0.2 * gb   # bias lr_mult 2
        w, b = w - hw, b - hb
    np.testing.assert_allclose(solver.module.ip.weight.detach().numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.module.ip.bias.detach().numpy(), b, rtol=1e-5, atol=1e-6)


def test_adadelta(tmp_path, monkeypatch):
    solver, feed, w, b = make(tmp_path, monkeypatch, 'type: "AdaDelta"\nbase_lr: 1\nmomentum: 0.95\n'
                              'delta: 1e-6\nweight_decay: 0.01\nlr_policy: "fixed"\n', 4)
    solver.step(4)
    state = {name: [np.zeros_like(v), np.zeros_like(v)] for name, v in (("w", w), ("b", b))}
    for k in range(4):
        _, gw, gb = gradients(w, b, feed["x"][k].astype(np.float64), feed["y"][k].astype(np.float64))
        new = {}
        for name, v, g, decay, lr in (("w", w, gw + 0.01 * w, 1, 1.0), ("b", b, gb, 0, 2.0)):
            h1, h2 = state[name]
            h1 = 0.95 * h1 + 0.05 * g * g
            u = g * np.sqrt((h2 + 1e-6) / (h1 + 1e-6))
            h2 = 0.95 * h2 + 0.05 * u * u
            state[name] = [h1, h2]
            new[name] = v - lr * u
        w, b = new["w"], new["b"]
    np.testing.assert_allclose(solver.module.ip.weight.detach().numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(solver.module.ip.bias.detach().numpy(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy,fields,rates", [
    ("exp", {"gamma": 0.5}, [1, 0.5, 0.25, 0.125]),
    ("poly", {"power": 2.0, "max_iter": 4}, [1, 0.5625, 0.25, 0.0625]),
    ("sigmoid", {"gamma": 1.0, "stepsize": 2}, [1 / (1 + np.e ** 2), 1 / (1 + np.e), 0.5, 1 / (1 + np.e ** -1)]),
    ("multistep", {"gamma": 0.1, "stepvalue": [1, 3]}, [1, 0.1, 0.1, 0.01]),
    ("step", {"gamma": 0.1, "stepsize": 2}, [1, 1, 0.1, 0.1]),
    ("inv", {"gamma": 1.0, "power": 1.0}, [1, 0.5, 1 / 3, 0.25]),
])
def test_lr_policies(policy, fields, rates):
    p = caffe_pb2.SolverParameter(base_lr=1.0, lr_policy=policy, **fields)
    state = {"current_step": 0}
    got = [lr_policies.get(policy).rate(p, it, state) for it in range(4)]
    np.testing.assert_allclose(got, rates, rtol=1e-6)


SHARED = '''name: "s"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" } param { name: "b" decay_mult: 0 }
        inner_product_param { num_output: 3 } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" lr_mult: 3 } param { name: "b" }
        inner_product_param { num_output: 3 } }
layer { name: "c" type: "InnerProduct" bottom: "b" top: "c" param { name: "w" %s } param { name: "b" }
        inner_product_param { num_output: 3 } }
'''


def test_shared_multipliers_resolve_as_caffe_resolves_them(tmp_path):
    import netdef
    from netdef.training.params import learnable_params
    (tmp_path / "n.prototxt").write_text(SHARED % "")
    gm = netdef.load(tmp_path / "n.prototxt", phase="TRAIN")
    params = learnable_params(netdef.record(gm).net, gm)
    assert [(e.owner, e.lr_mult, e.decay_mult) for e in params] == [(("a", 0), 3.0, 1.0), (("a", 1), 1.0, 0.0)]
    assert params[0].holders == [("a", 0), ("b", 0), ("c", 0)]
    (tmp_path / "n.prototxt").write_text(SHARED % "lr_mult: 2")
    gm = netdef.load(tmp_path / "n.prototxt", phase="TRAIN")
    with pytest.raises(netdef.NetdefError, match="shared param 'w' has lr_mult 2 here but 3"):
        learnable_params(netdef.record(gm).net, gm)


def test_average_loss_smooths_the_logged_loss(tmp_path, monkeypatch):
    import io
    from netdef.training.log import TrainingLog
    solver, feed, w, b = make(tmp_path, monkeypatch, 'base_lr: 0.01\nlr_policy: "fixed"\ndisplay: 1\n'
                              'average_loss: 2\n', 4)
    out = io.StringIO()
    solver.log = TrainingLog(stream=out, average_loss=2)
    losses = solver.step(3)
    lines = out.getvalue().splitlines()
    logged = [float(line.split("loss = ")[1].split(",")[0]) for line in lines if "), loss = " in line]
    np.testing.assert_allclose(logged, [losses[0], (losses[0] + losses[1]) / 2, (losses[1] + losses[2]) / 2],
                               rtol=1e-5)
    # Caffe's output lines: each iteration's own loss top (not smoothed), with its weight 0.5.
    shown = [line.split("] ")[1] for line in lines if "Train net output" in line]
    assert len(shown) == 3 and all(line.startswith("    Train net output #0: loss = ") for line in shown)
    for line, loss in zip(shown, losses):
        value, note = line.split("loss = ", 1)[1].split(" ", 1)
        assert float(value) == pytest.approx(2 * loss, rel=1e-5)
        assert note.startswith("(* 0.5 = ") and float(note.split()[3]) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("display", [2, 3])
def test_solve_ends_with_caffes_last_display_when_display_divides_max_iter(tmp_path, monkeypatch, display):
    import io

    import torch
    from netdef.training.log import TrainingLog
    solver, feed, w, b = make(tmp_path, monkeypatch, 'base_lr: 0.01\nlr_policy: "fixed"\ndisplay: %d\n' % display, 4)
    out = io.StringIO()
    solver.log = TrainingLog(stream=out, display=display)
    assert solver.solve()
    last = out.getvalue().splitlines()[-1]
    if display == 3:                    # 4 % 3: Caffe runs no last pass
        assert "Iteration 4, loss" not in out.getvalue() and solver.passes == 4
        return
    # One more forward pass on the next batch (the arrays start over) after the 4 updates.
    assert solver.passes == 5
    with torch.no_grad():
        want = float(solver.net_loss(solver.module(torch.from_numpy(feed["x"][0]), torch.from_numpy(feed["y"][0]))))
    assert "solver.cpp:327] Iteration 4, loss = " in last
    assert float(last.split("loss = ")[1]) == pytest.approx(want, rel=1e-5)

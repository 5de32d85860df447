"""RNN, LSTM and LSTMUnit (compiler/layers/recurrent.py) against Caffe's equations
computed here in float64 numpy, step by step and stream by stream (rnn_layer.cpp's and
lstm_layer.cpp's unrolled nets, lstm_unit_layer.cpp), independently of the modules: cont
resets, x_static, expose_hidden, the state kept between passes, the blobs in Caffe's
order and shapes through a .caffemodel, the checks, summary, drawing and conversion, and
the state each process keeps under torchrun."""
import numpy as np
import pytest
import torch

import netdef
from compiler.backends import draw, dsl_writer
from compiler.backends.summary import summarize
from compiler.frontends import dsl
from compiler.frontends.prototxt import parse_net_text
from compiler.frontends.upgrade import upgrade_layers
from compiler.layers import registry
from tests.nets import compile_text, inputs, layer, parse_text, randn, refused
from tests.test_weights import check_round_trip, write

T, N, H = 4, 3, 5
# Stream 0 runs on, stream 1 starts a new sequence at t = 2, stream 2 at t = 0 and t = 3.
CONT = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 1, 0]], np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def rnn_reference(x, cont, blobs, static=None, h0=None):
    """rnn_layer.cpp's unrolled net for each stream: h_t = tanh(W_hh cont_t h_{t-1} +
    W_xh x_t + b_h [+ W_xh_static x_static]), o_t = tanh(W_ho h_t + b_o)."""
    blobs = [b.astype(np.float64) for b in blobs]
    w_xh, b_h = blobs[:2]
    w_s = blobs[2] if static is not None else None
    w_hh, w_ho, b_o = blobs[-3:]
    t_steps, n = cont.shape
    h_dim = b_h.shape[0]
    out, h_last = np.zeros((t_steps, n, h_dim)), np.zeros((1, n, h_dim))
    for s in range(n):
        h = np.zeros(h_dim) if h0 is None else h0[0, s].astype(np.float64)
        for t in range(t_steps):
            a = w_hh @ (cont[t, s] * h) + w_xh @ x[t, s].ravel() + b_h
            if static is not None:
                a = a + w_s @ static[s].ravel()
            h = np.tanh(a)
            out[t, s] = np.tanh(w_ho @ h + b_o)
        h_last[0, s] = h
    return out, h_last


def lstm_unit_reference(c_prev, gates, cont):
    """lstm_unit_layer.cpp's Forward_cpu: gates i', f', o', g' along the last axis, f = 0
    where cont is 0, else cont sigmoid(f'); (c, h)."""
    h_dim = c_prev.shape[-1]
    i, f, o, g = (gates[..., k * h_dim:(k + 1) * h_dim] for k in range(4))
    cont = np.asarray(cont, np.float64)[..., None]
    f = np.where(cont == 0, 0, cont * sigmoid(f))
    c = f * c_prev + sigmoid(i) * np.tanh(g)
    return c, sigmoid(o) * np.tanh(c)


def lstm_reference(x, cont, blobs, static=None, h0=None, c0=None):
    """lstm_layer.cpp's unrolled net and LSTMUnit for each stream, gates i, f, o, g."""
    blobs = [b.astype(np.float64) for b in blobs]
    w_xc, b_c = blobs[:2]
    w_s = blobs[2] if static is not None else None
    w_hc = blobs[-1]
    t_steps, n = cont.shape
    h_dim = b_c.shape[0] // 4
    out, last = np.zeros((t_steps, n, h_dim)), np.zeros((2, n, h_dim))
    for s in range(n):
        h = np.zeros(h_dim) if h0 is None else h0[0, s].astype(np.float64)
        c = np.zeros(h_dim) if c0 is None else c0[0, s].astype(np.float64)
        for t in range(t_steps):
            gate = w_hc @ (cont[t, s] * h) + w_xc @ x[t, s].ravel() + b_c
            if static is not None:
                gate = gate + w_s @ static[s].ravel()
            c, h = lstm_unit_reference(c, gate, cont[t, s])
            out[t, s] = h
        last[:, s] = h, c
    return out, last[:1], last[1:]


def blob_arrays(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.6, 0.6, s).astype(np.float32) for s in shapes]


def rnn_shapes(d, s=None):
    return [(H, d), (H,)] + ([(H, s)] if s else []) + [(H, H), (H, H), (H,)]


def lstm_shapes(d, s=None):
    return [(4 * H, d), (4 * H,)] + ([(4 * H, s)] if s else []) + [(4 * H, H)]


def net_text(kind, x_shape, static=None, expose=False, extra=""):
    shapes = {"x": x_shape, "cont": x_shape[:2]}
    bottoms = ["x", "cont"]
    if static:
        shapes["xs"] = static
        bottoms.append("xs")
    states = ("h", "c") if kind == "LSTM" else ("h",)
    tops = ["y"]
    if expose:
        for name in states:
            shapes[name + "0"] = (1, x_shape[1], H)
            bottoms.append(name + "0")
            tops.append(name + "T")
    param = "recurrent_param { num_output: %d %s %s }" % (H, "expose_hidden: true" if expose else "", extra)
    return inputs(**shapes) + layer("rec", kind, bottoms, param, tops=tops)


REFERENCES = {"RNN": (rnn_reference, rnn_shapes), "LSTM": (lstm_reference, lstm_shapes)}


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
@pytest.mark.parametrize("static", [None, (N, 2, 3)])
def test_forward_is_caffes_with_cont_resets_and_x_static(kind, static):
    reference, blob_shapes = REFERENCES[kind]
    x_shape = (T, N, 2, 2)          # the features are flattened from axis 2, D = 4
    blobs = blob_arrays(blob_shapes(4, 6 if static else None))
    gm = compile_text(net_text(kind, x_shape, static), {"rec": blobs})
    x = randn(*x_shape)
    xs = randn(*static, seed=2) if static else None
    feed = dict(x=torch.from_numpy(x), cont=torch.from_numpy(CONT))
    if static:
        feed["xs"] = torch.from_numpy(xs)
    with torch.no_grad():
        got = gm(**feed)["y"].numpy()
    want = reference(x, CONT, blobs, xs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The reset matters: without it stream 1 at t = 2 would differ.
    unreset = reference(x, np.ones_like(CONT), blobs, xs)[0]
    assert not np.allclose(unreset[2, 1], want[2, 1], atol=1e-3)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_gradients_are_the_derivatives_and_cont_gets_none(kind):
    _, blob_shapes = REFERENCES[kind]
    gm = compile_text(net_text(kind, (T, N, 3), (N, 2)), {"rec": blob_arrays(blob_shapes(3, 2))})
    module = gm.rec.double()

    def run(x, xs):
        for name in module.states:                  # every call starts from zero states
            setattr(module, name + "_kept", getattr(module, name + "_kept")[:, :0])
        return module(x, torch.from_numpy(CONT).double(), xs)
    x = torch.randn(T, N, 3, dtype=torch.float64, requires_grad=True)
    xs = torch.randn(N, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (x, xs), fast_mode=True)
    cont = torch.from_numpy(CONT).double().requires_grad_()
    module(x, cont, xs).sum().backward()
    assert cont.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_expose_hidden_takes_and_gives_the_states(kind):
    reference, blob_shapes = REFERENCES[kind]
    blobs = blob_arrays(blob_shapes(3))
    gm = compile_text(net_text(kind, (T, N, 3), expose=True), {"rec": blobs})
    x = randn(T, N, 3)
    names = "hc" if kind == "LSTM" else "h"
    states = [randn(1, N, H, seed=k + 3) for k in range(len(names))]
    feed = {name + "0": torch.from_numpy(s).requires_grad_() for name, s in zip(names, states)}
    out = gm(x=torch.from_numpy(x).requires_grad_(), cont=torch.from_numpy(CONT), **feed)
    want = reference(x, CONT, blobs, None, *states)
    np.testing.assert_allclose(out["y"].detach().numpy(), want[0], rtol=1e-5, atol=1e-6)
    for name, expected in zip(names, want[1:]):
        np.testing.assert_allclose(out[name + "T"].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # Caffe shares only the data of h0/c0 and hT/cT with its unrolled net: no gradient
    # flows to the initial states or from the final ones.
    out["y"].sum().backward()
    assert all(t.grad is None for t in feed.values())
    assert all(not out[name + "T"].requires_grad for name in names)
    # The states come from the bottoms on every pass, not from the last pass.
    again = gm(x=torch.from_numpy(x), cont=torch.from_numpy(CONT), **feed)
    torch.testing.assert_close(again["y"], out["y"])


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_the_state_carries_over_to_the_next_pass(kind):
    """Caffe copies the last pass's final states into the first step of the next: a
    sequence fed in two chunks, cont = 1 at the second's start, is the sequence fed whole."""
    reference, blob_shapes = REFERENCES[kind]
    blobs = blob_arrays(blob_shapes(3))
    gm = compile_text(net_text(kind, (2, N, 3)), {"rec": blobs})
    x = randn(4, N, 3)
    cont = np.ones((4, N), np.float32)
    cont[0] = 0
    want = reference(x, cont, blobs)[0]
    with torch.no_grad():
        first = gm(x=torch.from_numpy(x[:2]), cont=torch.from_numpy(cont[:2]))["y"]
        second = gm(x=torch.from_numpy(x[2:]), cont=torch.from_numpy(cont[2:]))["y"]
        np.testing.assert_allclose(torch.cat([first, second]).numpy(), want, rtol=1e-5, atol=1e-6)
        # cont = 0 starts over whatever the kept state is.
        restart = gm(x=torch.from_numpy(x[:2]), cont=torch.from_numpy(cont[:2]))["y"]
        torch.testing.assert_close(restart, first)
        # Fewer streams continue from the first ones' states.
        gm(x=torch.from_numpy(x[:2]), cont=torch.from_numpy(cont[:2]))
        fewer = gm(x=torch.from_numpy(x[2:, :1]), cont=torch.from_numpy(cont[2:, :1]))["y"]
        np.testing.assert_allclose(fewer.numpy(), want[2:, :1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, names, static", [
    ("RNN", ["W_xh", "b_h", "W_hh", "W_ho", "b_o"], None),
    ("RNN", ["W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o"], (N, 6)),
    ("LSTM", ["W_xc", "b_c", "W_hc"], None),
    ("LSTM", ["W_xc", "b_c", "W_xc_static", "W_hc"], (N, 2, 3))])
def test_blobs_are_caffes_in_order_and_shape_and_a_caffemodel_round_trips(kind, names, static, tmp_path):
    _, blob_shapes = REFERENCES[kind]
    net = parse_text(net_text(kind, (T, N, 7), static))
    defn, rec = registry.get(kind), net.layer("rec")
    shapes = [net.blobs[b].shape for b in rec.bottoms]
    want = blob_shapes(7, 6 if static else None)
    assert [tuple(s) for s in defn.blob_shapes(rec, shapes)] == want
    assert list(defn.blob_attrs(rec, shapes)) == names
    blobs = blob_arrays(want)
    path = tmp_path / "rec.caffemodel"
    write(path, net, {"rec": blobs})
    gm = netdef.compile_net(net, path)
    for name, arr in zip(names, blobs):
        assert getattr(gm.rec, name).detach().numpy().tobytes() == arr.tobytes()
    check_round_trip(net, path, tmp_path)


def test_fillers_fill_weights_and_biases():
    gm = compile_text(net_text("LSTM", (T, N, 3), (N, 2), extra='weight_filler { type: "constant" value: 2 } '
                               'bias_filler { type: "constant" value: 3 }'))
    for name in ("W_xc", "W_xc_static", "W_hc"):
        assert torch.all(getattr(gm.rec, name) == 2)
    assert torch.all(gm.rec.b_c == 3)
    # Unset, both are Caffe's constant 0.
    assert not compile_text(net_text("RNN", (T, N, 3))).rec.W_hh.any()


@pytest.mark.parametrize("text, words", [
    (inputs(x=(T, N, 3), cont=(T, N)) + layer("rec", "LSTM", ["x", "cont"]), "num_output"),
    (inputs(x=(T, N, 3), cont=(T, N + 1)) + layer("rec", "LSTM", ["x", "cont"], "recurrent_param { num_output: 2 }"),
     "cont must be timesteps x streams"),
    (inputs(x=(T,), cont=(T, N)) + layer("rec", "RNN", ["x", "cont"], "recurrent_param { num_output: 2 }"),
     "at least 2 axes"),
    (inputs(x=(T, N, 3), cont=(T, N), xs=(N + 1, 2)) + layer(
        "rec", "LSTM", ["x", "cont", "xs"], "recurrent_param { num_output: 2 }"), "x_static"),
    (inputs(x=(T, N, 3), cont=(T, N), h0=(1, N, 2)) + layer(
        "rec", "LSTM", ["x", "cont", "h0"], "recurrent_param { num_output: 2 expose_hidden: true }",
        tops=["y", "hT", "cT"]), "4 to 5 bottoms, got 3"),
    (inputs(x=(T, N, 3), cont=(T, N), h0=(1, N, 3)) + layer(
        "rec", "RNN", ["x", "cont", "h0"], "recurrent_param { num_output: 2 expose_hidden: true }",
        tops=["y", "hT"]), "h0 must be 1 x streams x num_output"),
    (inputs(x=(T, N, 3), cont=(T, N)) + layer(
        "rec", "RNN", ["x", "cont"], "recurrent_param { num_output: 2 }", tops=["y", "hT"]), "gives 1 top"),
])
def test_caffes_checks_are_located_errors(text, words):
    e = refused(text)
    assert words in e.message and e.layer == "rec"


def test_summary_draw_and_convert():
    text = net_text("LSTM", (T, N, 3), (N, 2), expose=True)
    net = parse_text(text)
    rows, totals = summarize(net)
    row = next(r for r in rows if r["name"] == "rec")
    assert row["params"] == 4 * H * (3 + 1 + 2 + H)
    # Per timestep: N streams of W_xc and W_hc, and x_static's transform spread over T.
    assert row["macs"] == N * 4 * H * (3 + H) + N * 2 * 4 * H // T
    box = next(n for n in draw.build_view(net)["nodes"] if n["name"] == "rec")
    assert box["layers"][0]["key"] == "5 out, hidden exposed"
    proto, blocks, lines = parse_net_text(text, "t.prototxt")
    params = [l.param for l in upgrade_layers(proto, blocks, "t.prototxt", lines)]
    written = dsl_writer.to_dsl("t", params)
    assert "lstm(" in written
    assert list(dsl.load_proto("t.net", text=written).layer) == params


def test_the_netdef_language_calls_them_by_name():
    text = '''net N {
    input x: 6x2x3
    input cont: 6x2
    y = lstm(x, cont, 8, weight_filler={type="xavier"})
    z = rnn(y, cont, 4)
}
'''
    built = {l.name: l for l in dsl.load_proto("t.net", text=text).layer}
    assert (built["y"].type, list(built["y"].bottom), built["y"].recurrent_param.num_output) == ("LSTM", ["x", "cont"], 8)
    assert built["z"].type == "RNN" and built["y"].recurrent_param.weight_filler.type == "xavier"



def test_an_exported_module_with_exposed_states_runs_like_the_module():
    gm = compile_text(net_text("LSTM", (2, N, 3), expose=True), {"rec": blob_arrays(lstm_shapes(3))})
    feed = (torch.from_numpy(randn(2, N, 3)), torch.ones(2, N), torch.from_numpy(randn(1, N, H, seed=4)),
            torch.from_numpy(randn(1, N, H, seed=5)))
    with torch.no_grad():
        want = gm(*feed)
        got = torch.export.export(gm, feed).module()(*feed)
    for key in ("y", "hT", "cT"):
        torch.testing.assert_close(got[key], want[key])


def test_an_exported_module_carries_the_state_too():
    """The kept state is a buffer written in place, which torch.export captures: the
    exported module, too, continues from its previous pass."""
    text = net_text("LSTM", (2, N, 3))
    blobs = {"rec": blob_arrays(lstm_shapes(3))}
    x, cont = torch.from_numpy(randn(2, N, 3)), torch.ones(2, N)
    with torch.no_grad():
        gm = compile_text(text, blobs)
        want = [gm(x=x, cont=cont)["y"] for _ in range(2)]
        exported = torch.export.export(compile_text(text, blobs), (x, x.new_zeros(2, N))).module()
        got = [exported(x, cont)["y"] for _ in range(2)]
    assert not torch.allclose(want[0], want[1])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_an_in_place_relu_after_it_leaves_its_gradients_alone(kind):
    """A ReLU written in place on the output computes into it only where the layer's
    backward does not read it (RNN's top is a tanh, whose derivative reads it)."""
    _, blob_shapes = REFERENCES[kind]
    blobs = {"rec": blob_arrays(blob_shapes(3))}
    text = net_text(kind, (T, N, 3)) + layer("relu", "ReLU", ["y"], tops=["y"])
    grads = []
    for gm in (compile_text(text, blobs), compile_text(net_text(kind, (T, N, 3)), blobs)):
        x = torch.from_numpy(randn(T, N, 3)).requires_grad_()
        y = gm(x=x, cont=torch.from_numpy(CONT))["y"]
        (torch.relu(y) if len(grads) else y).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_a_solver_trains_an_lstm_and_snapshots_its_blobs(tmp_path, monkeypatch):
    from netdef.training.feed import ArrayFeed
    from netdef.training.solver import Solver
    from compiler.frontends.caffemodel import read_caffemodel
    monkeypatch.chdir(tmp_path)
    filler = 'weight_filler { type: "uniform" min: -0.3 max: 0.3 }'
    (tmp_path / "net.prototxt").write_text(
        inputs(x=(T, N, 3), cont=(T, N), target=(T, N, 2)) +
        layer("rec", "LSTM", ["x", "cont"], "recurrent_param { num_output: %d %s }" % (H, filler), tops=["h"]) +
        layer("out", "InnerProduct", ["h"], "inner_product_param { num_output: 2 axis: 2 %s }" % filler) +
        layer("loss", "EuclideanLoss", ["out", "target"]))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.5\nlr_policy: "fixed"\n'
                                              'max_iter: 30\nsnapshot_prefix: "snap"\nrandom_seed: 1\n')
    repeat = 30
    # One batch, over and over (the state carries over from pass to pass where cont_0 is 1).
    feed = {name: np.repeat(a[None], repeat, 0) for name, a in
            (("x", randn(T, N, 3)), ("cont", CONT), ("target", np.tanh(randn(T, N, 2, seed=3))))}
    solver = Solver("solver.prototxt", feed=ArrayFeed(feed))
    losses = solver.step(repeat)
    assert losses[-1] < 0.6 * losses[0]
    solver.snapshot()
    blobs = {fl.name: fl.blobs for fl in read_caffemodel(next(tmp_path.glob("snap*.caffemodel")))}
    assert [b.shape for b in blobs["rec"]] == [(4 * H, 3), (4 * H,), (4 * H, H)]


UNIT = inputs(c_prev=(1, N, H), gates=(1, N, 4 * H), cont=(1, N)) + \
    layer("unit", "LSTMUnit", ["c_prev", "gates", "cont"], tops=["c", "h"])


def test_lstm_unit_is_caffes_step_and_cont_gets_no_gradient():
    c_prev, gates = randn(1, N, H), randn(1, N, 4 * H, seed=1) * 2
    # A sequence start, a running stream, and a cont Caffe scales the forget gate by.
    cont = np.array([[0, 1, 0.5]], np.float32)
    gm = compile_text(UNIT)
    feed = dict(c_prev=torch.from_numpy(c_prev).requires_grad_(), gates=torch.from_numpy(gates).requires_grad_(),
                cont=torch.from_numpy(cont).requires_grad_())
    out = gm(**feed)
    want = lstm_unit_reference(c_prev.astype(np.float64), gates.astype(np.float64), cont)
    for key, expected in zip(("c", "h"), want):
        np.testing.assert_allclose(out[key].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # cont 0 forgets c_prev: c is i g alone.
    np.testing.assert_allclose(want[0][0, 0], lstm_unit_reference(np.zeros(H), gates[0, 0].astype(np.float64), 1)[0])
    (out["c"].sum() + out["h"].sum()).backward()
    assert feed["cont"].grad is None
    assert feed["c_prev"].grad[0, 0].abs().sum() == 0 and feed["c_prev"].grad[0, 1].abs().sum() > 0

    def step(c_prev, gates):
        return gm.unit(c_prev, gates, torch.from_numpy(cont).double())
    assert torch.autograd.gradcheck(step, (torch.from_numpy(c_prev).double().requires_grad_(),
                                           torch.from_numpy(gates).double().requires_grad_()))


def test_lstm_is_lstm_units_unrolled():
    """Caffe's LSTM is its unrolled net of InnerProducts and LSTMUnits: the same net
    written with LSTMUnit layers gives the LSTM's output, and the modules share one step."""
    blobs = blob_arrays(lstm_shapes(3))
    x = torch.from_numpy(randn(2, N, 3))
    cont = torch.from_numpy(CONT[:2])
    with torch.no_grad():
        want = compile_text(net_text("LSTM", (2, N, 3)), {"rec": blobs})(x=x, cont=cont)["y"]
        w_xc, b_c, w_hc = (torch.from_numpy(b) for b in blobs)
        unit = compile_text(UNIT).unit
        h = c = torch.zeros(1, N, H)
        for t in range(2):
            gates = (h * cont[t, :, None]) @ w_hc.T + x[t:t + 1] @ w_xc.T + b_c
            c, h = unit(c, gates, cont[t:t + 1])
            torch.testing.assert_close(h[0], want[t])


@pytest.mark.parametrize("shapes, words", [
    (dict(c_prev=(N, H), gates=(1, N, 4 * H), cont=(1, N)), "c_prev must have 3 axes"),
    (dict(c_prev=(1, N, H), gates=(1, N, 4 * H), cont=(1, N, 1)), "cont must have 2 axes"),
    (dict(c_prev=(2, N, H), gates=(2, N, 4 * H), cont=(2, N)), "c_prev must start with 1 x streams"),
    (dict(c_prev=(1, N, H), gates=(1, N + 1, 4 * H), cont=(1, N)), "gates must start with 1 x streams"),
    (dict(c_prev=(1, N, H), gates=(1, N, 4 * H), cont=(1, N + 1)), "cont must start with 1 x streams"),
    (dict(c_prev=(1, N, H), gates=(1, N, 3 * H), cont=(1, N)), "gates must be 4 x 5 wide"),
])
def test_lstm_units_checks_are_located_errors(shapes, words):
    e = refused(inputs(**shapes) + layer("unit", "LSTMUnit", ["c_prev", "gates", "cont"], tops=["c", "h"]))
    assert words in e.message and e.layer == "unit"


def test_lstm_unit_is_summarised_drawn_converted_and_called_by_name():
    rows, _ = summarize(parse_text(UNIT))
    row = next(r for r in rows if r["name"] == "unit")
    assert row["params"] == 0 and row["macs"] == 0
    box = next(n for n in draw.build_view(parse_text(UNIT))["nodes"] if n["name"] == "unit")
    assert box["params"] == 0
    proto, blocks, lines = parse_net_text(UNIT, "t.prototxt")
    params = [l.param for l in upgrade_layers(proto, blocks, "t.prototxt", lines)]
    written = dsl_writer.to_dsl("t", params)
    assert "lstm_unit(c_prev, gates, cont)" in written
    assert list(dsl.load_proto("t.net", text=written).layer) == params
    text = "net N {\n    input c: 1x2x3\n    input g: 1x2x12\n    input k: 1x2\n" \
           "    c1, h1 = lstm_unit(c, g, k)\n}\n"
    built = next(l for l in dsl.load_proto("t.net", text=text).layer if l.type == "LSTMUnit")
    assert (list(built.bottom), list(built.top)) == (["c", "g", "k"], ["c1", "h1"])


DDP_SCRIPT = '''
import gc

import torch
from netdef.commands.train import _distributed
from tests.nets import compile_text
from tests.test_layers_recurrent import blob_arrays, lstm_shapes, net_text, randn

rank, world, wrap = _distributed(torch.device("cpu"))
text, blobs = net_text("LSTM", (2, 3, 4)), {"rec": blob_arrays(lstm_shapes(4))}
x = [torch.from_numpy(randn(2, 3, 4, seed=10 * rank + k)) for k in range(2)]
cont = torch.ones(2, 3)
wrapped, alone = wrap(compile_text(text, blobs)), compile_text(text, blobs)
for k in range(2):
    got, want = wrapped(x=x[k], cont=cont)["y"], alone(x=x[k], cont=cont)["y"]
    got.sum().backward()
    torch.testing.assert_close(got, want)
print("rank", rank, "carried its own state")
# As train.py does: the wrapper's reference cycles hold the group, whose gloo threads
# would otherwise outlive it and abort the process at exit.
del wrapped
gc.collect()
torch.distributed.destroy_process_group()
'''


def test_under_torchrun_each_process_carries_its_own_state(tmp_path):
    """Caffe's multi-GPU solver broadcasts the root's blobs, not the recurrent state: two
    gloo processes fed different sequences each continue from their own previous pass
    (DistributedDataParallel broadcasts rank 0's buffers before every forward but those the
    module names per-process)."""
    import os
    import subprocess
    import sys
    (tmp_path / "ddp_state.py").write_text(DDP_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(tmp_path / "ddp_state.py")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("carried its own state") == 2


def test_only_the_recurrent_states_are_per_process_buffers():
    from netdef.commands.train import per_process_buffers
    gm = compile_text(inputs(x=(T, N, 3), cont=(T, N)) +
                      layer("rec", "LSTM", ["x", "cont"], "recurrent_param { num_output: 4 }") +
                      layer("rnn", "RNN", ["rec", "cont"], "recurrent_param { num_output: 4 }") +
                      layer("bn", "BatchNorm", ["rnn"]))
    assert sorted(per_process_buffers(gm)) == ["rec.c_kept", "rec.h_kept", "rnn.h_kept"]
    # BatchNorm's statistics stay the root's, broadcast as Caffe's P2PSync does.
    assert {"bn.mean", "bn.variance"} <= {name for name, _ in gm.named_buffers()}

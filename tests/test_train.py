"""netdef train beyond the golden traces: snapshots and resume, signals, the Python
Solver, a user's own torch.optim loop, and the located errors of bad input."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import netdef
from compiler.proto import caffe_pb2
from netdef.cli import main
from netdef.training.feed import ArrayFeed
from netdef.training.solver import Solver
from tests.nets import randn

# Dropout draws random numbers every pass (resume must restore the generator); the loss
# layer has no top (Caffe gives it one); the two fc layers share their weight blob.
NET = '''name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        param { name: "shared_w" lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 36 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "fc2" type: "InnerProduct" bottom: "conv" top: "fc2"
        param { name: "shared_w" } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 36 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "sum" type: "Eltwise" bottom: "fc" bottom: "fc2" top: "sum" }
layer { name: "out" type: "InnerProduct" bottom: "sum" top: "out"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" }
'''

SOLVER = '''net: "net.prototxt"
base_lr: 0.05
momentum: 0.9
weight_decay: 0.001
lr_policy: "step"
gamma: 0.5
stepsize: 3
max_iter: %(max_iter)d
snapshot: %(snapshot)d
snapshot_prefix: "snap/small"
random_seed: 7
display: 1
'''


def write_case(folder, max_iter=8, snapshot=2, solver_extra="", entries=None):
    folder.mkdir(exist_ok=True)
    (folder / "snap").mkdir(exist_ok=True)
    (folder / "net.prototxt").write_text(NET)
    (folder / "solver.prototxt").write_text(SOLVER % {"max_iter": max_iter, "snapshot": snapshot}
                                            + solver_extra)
    n = entries or max_iter
    np.savez(folder / "feed.npz", data=randn(n, 4, 3, 5, 5),
             label=np.random.default_rng(1).integers(0, 5, (n, 4)).astype(np.float32))
    return folder


def train(folder, *extra, expect=0):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train", "solver.prototxt", "--feed", "feed.npz"] + list(extra)) == expect
    finally:
        os.chdir(cwd)


def test_snapshot_files_are_caffes(tmp_path):
    case = write_case(tmp_path / "c", max_iter=4, snapshot=2)
    train(case)
    names = sorted(os.listdir(case / "snap"))
    assert "small_iter_2.caffemodel" in names and "small_iter_4.solverstate" in names
    assert not [n for n in names if n.startswith(".tmp")]
    state = caffe_pb2.SolverState.FromString((case / "snap/small_iter_4.solverstate").read_bytes())
    assert state.iter == 4 and state.current_step == 1
    assert state.learned_net == "snap/small_iter_4.caffemodel"
    # Caffe's learnable params: conv w, b; fc w (shared_w), b; fc2 b (its w is fc's); out w, b.
    assert [tuple(h.shape.dim) for h in state.history] == [
        (4, 3, 3, 3), (4,), (36, 36), (36,), (36,), (5, 36), (5,)]


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    whole = write_case(tmp_path / "whole")
    train(whole, "--trace", "trace.npz")
    expected = np.load(whole / "trace.npz")
    killed = write_case(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "netdef", "train", "solver.prototxt", "--feed", "feed.npz"],
                            cwd=killed, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    deadline = time.time() + 120
    while not (killed / "snap/small_iter_2.solverstate").exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = sorted((p for p in (killed / "snap").glob("small_iter_*.solverstate")),
                    key=lambda p: int(p.name.split("_")[-1].split(".")[0]))
    assert states, "no snapshot before the kill"
    last = states[-1]
    done = int(last.name.split("_")[-1].split(".")[0])
    train(killed, "--snapshot", "snap/" + last.name, "--trace", "trace.npz")
    resumed = np.load(killed / "trace.npz")
    assert resumed["loss"].tobytes() == expected["loss"][done:].tobytes()
    for key in expected.files:
        if key.startswith("iter") and int(key[4:].split("/")[0]) > done:
            assert resumed[key].tobytes() == expected[key].tobytes(), key


def test_sigint_snapshots_and_stops_sighup_snapshots_and_goes_on(tmp_path, monkeypatch):
    case = write_case(tmp_path / "c", max_iter=6, snapshot=0)
    monkeypatch.chdir(case)
    solver = Solver("solver.prototxt", feed=ArrayFeed(dict(np.load("feed.npz"))))
    signals = {2: signal.SIGHUP, 4: signal.SIGINT}

    def on_iteration(s, loss, rate):
        if s.iter in signals:
            os.kill(os.getpid(), signals[s.iter])

    with solver.signals():
        assert solver.solve(on_iteration=on_iteration) is False
    assert solver.iter == 4
    assert sorted(p.name for p in (case / "snap").glob("*.solverstate")) == \
        ["small_iter_2.solverstate", "small_iter_4.solverstate"]


def test_python_solver_step_snapshot_restore(tmp_path, monkeypatch):
    case = write_case(tmp_path / "c", max_iter=6, snapshot=0)
    monkeypatch.chdir(case)
    feed = ArrayFeed(dict(np.load("feed.npz")))
    torch.manual_seed(0)
    a = Solver("solver.prototxt", feed=feed)
    a.step(3)
    path = a.snapshot()
    later = a.step(3)
    torch.manual_seed(1)
    b = Solver("solver.prototxt", feed=feed)
    b.restore(path)
    assert b.iter == 3 and b.current_step == 0
    assert b.step(3) == later
    for x, y in zip(a.params, b.params):
        assert torch.equal(x.tensor, y.tensor)


def test_shared_param_is_one_tensor_with_the_summed_gradient(tmp_path, monkeypatch):
    case = write_case(tmp_path / "c", max_iter=2, snapshot=0)
    monkeypatch.chdir(case)
    solver = Solver("solver.prototxt", feed=ArrayFeed(dict(np.load("feed.npz"))))
    fc, fc2 = solver.module.fc, solver.module.fc2
    assert fc.weight is fc2.weight
    shared = [e for e in solver.params if e.holders == [("fc", 0), ("fc2", 0)]]
    assert len(shared) == 1 and shared[0].lr_mult == 1 and shared[0].decay_mult == 1


def test_compiled_module_trains_in_a_users_torch_optim_loop(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET.replace("dropout_ratio: 0.3", "dropout_ratio: 0.0"))
    model = netdef.load(tmp_path / "net.prototxt", phase="TRAIN")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.from_numpy(randn(4, 3, 5, 5))
    label = torch.tensor([0.0, 1, 2, 3])
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model(data=data, label=label)["loss/(automatic)"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def errors_of(capsys):
    return capsys.readouterr().err


@pytest.mark.parametrize("extra,needle", [
    ("bas_lr: 0.1\n", "did you mean 'base_lr'"),
    ('type: "Adamm"\n', 'did you mean "Adam"'),
    ('lr_policy: "stepp"\n', "unknown lr_policy"),
    ('lr_policy: "multistep"\nstepvalue: 5\nstepvalue: 3\n', "stepvalue must increase"),
    ("base_lr: -1\n", "base_lr must be positive"),
    ('snapshot_prefix: "nowhere/x"\n', "snapshot folder 'nowhere' does not exist"),
    ('train_net: "net.prototxt"\n', "the train net is given twice"),
])
def test_bad_solver_is_one_located_error_and_writes_nothing(tmp_path, capsys, extra, needle):
    case = write_case(tmp_path / "c", max_iter=2, snapshot=1)
    text = (case / "solver.prototxt").read_text()
    for field in ("base_lr", "lr_policy", "snapshot_prefix"):
        if extra.startswith(field):
            text = "\n".join(l for l in text.splitlines() if not l.startswith(field)) + "\n"
    (case / "solver.prototxt").write_text(text + extra)
    train(case, expect=1)
    err = errors_of(capsys)
    assert needle in err and "solver.prototxt:" in err
    assert not os.listdir(case / "snap")


def test_net_file_beside_the_solver_is_named_in_the_hint(tmp_path, capsys, monkeypatch):
    write_case(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "c/solver.prototxt", "--feed", "c/feed.npz"]) == 1
    err = errors_of(capsys)
    assert "net file 'net.prototxt' does not exist" in err and "exists beside the solver" in err


def test_feed_missing_input_or_short(tmp_path, capsys):
    case = write_case(tmp_path / "c", entries=3)
    train(case, expect=1)
    assert "array 'data' holds 3 entries; training needs 8" in errors_of(capsys)
    np.savez(case / "feed.npz", data=randn(8, 4, 3, 5, 5))
    train(case, expect=1)
    assert "no array for input blob(s) 'label'" in errors_of(capsys)
    assert not os.listdir(case / "snap")


def test_solverstate_of_another_net_is_refused(tmp_path, capsys):
    case = write_case(tmp_path / "c", max_iter=2, snapshot=2)
    train(case)
    (case / "solver.prototxt").write_text((case / "solver.prototxt").read_text()
                                          .replace('momentum: 0.9', 'momentum: 0.9\ntype: "Adam"'))
    train(case, "--snapshot", "snap/small_iter_2.solverstate", expect=1)
    assert "holds 7 history blobs; this net with a Adam solver has 14" in errors_of(capsys)


def test_solverstate_reader_reads_what_protobuf_writes(tmp_path):
    """Caffe writes the SolverState with protobuf: history blobs with a shape or with the
    legacy num/channels/height/width dims; netdef's zero-copy reader gets the same values,
    and a truncated file is a located error."""
    from compiler.errors import NetdefError
    from netdef.training.snapshot import read_state
    shaped = np.arange(6, dtype=np.float32).reshape(2, 3)
    legacy = -np.arange(24, dtype=np.float32)
    state = caffe_pb2.SolverState(iter=7, learned_net="snap/x_iter_7.caffemodel", current_step=2)
    state.history.add(shape=caffe_pb2.BlobShape(dim=[2, 3]), data=shaped.ravel())
    state.history.add(num=1, channels=2, height=3, width=4, data=legacy)
    path = tmp_path / "x_iter_7.solverstate"
    path.write_bytes(state.SerializeToString())
    iteration, learned, current_step, history = read_state(path)
    assert (iteration, learned, current_step) == (7, "snap/x_iter_7.caffemodel", 2)
    np.testing.assert_array_equal(history[0], shaped)
    np.testing.assert_array_equal(history[1], legacy.reshape(1, 2, 3, 4))
    path.write_bytes(state.SerializeToString()[:-5])
    with pytest.raises(NetdefError, match="not a valid solverstate"):
        read_state(path)


def test_nan_loss_names_iteration_and_layer_and_keeps_last_snapshot(tmp_path, capsys):
    case = write_case(tmp_path / "c", max_iter=6, snapshot=2)
    feed = dict(np.load(case / "feed.npz"))
    feed["data"][3, 0, 0, 0, 0] = np.nan
    np.savez(case / "feed.npz", **feed)
    train(case, expect=1)
    err = errors_of(capsys)
    assert "the loss became NaN at iteration 4: input blob 'data' is the first" in err
    assert "small_iter_2.solverstate" in err
    assert sorted(p.name for p in (case / "snap").glob("*.solverstate")) == ["small_iter_2.solverstate"]


def test_torchrun_two_processes_match_one_process_and_resume(tmp_path):
    """gloo on the CPU: two processes, each fed half of every batch, train as one process
    fed the whole batch (DDP averages the gradients as Caffe's multi-GPU solver does)."""
    net = NET.replace('layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" '
                      'dropout_param { dropout_ratio: 0.3 } }\n', "")
    # iter_size 2: the processes average once per iteration, after both passes.
    one = write_case(tmp_path / "one", max_iter=4, snapshot=2, solver_extra="iter_size: 2\n", entries=8)
    two = write_case(tmp_path / "two", max_iter=4, snapshot=2, solver_extra="iter_size: 2\n", entries=8)
    for case in (one, two):
        (case / "net.prototxt").write_text(net)
    train(one, "--trace", "trace.npz")
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")

    def torchrun(*extra):
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                 "--nproc_per_node", "2", "-m", "netdef", "train", "solver.prototxt",
                                 "--feed", "feed.npz"] + list(extra),
                                cwd=two, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    torchrun("--trace", "trace.npz")
    a, b = np.load(one / "trace.npz"), np.load(two / "trace.npz")
    keys = [k for k in a.files if k.startswith("iter") or k in ("loss", "lr")]
    for key in keys:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-5, err_msg=key)
    torchrun("--snapshot", "snap/small_iter_2.solverstate", "--trace", "resumed.npz")
    r = np.load(two / "resumed.npz")
    np.testing.assert_allclose(r["loss"], a["loss"][2:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r["iter4/out/0"], a["iter4/out/0"], rtol=1e-5, atol=1e-5)


TRAIN_VAL = NET.replace('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" }',
                        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }\n'
                        'layer { name: "acc" type: "Accuracy" bottom: "out" bottom: "label" top: "accuracy"\n'
                        '        include { phase: TEST } accuracy_param { top_k: 2 } }')


def test_test_nets_share_weights_and_report_accuracy(tmp_path, monkeypatch):
    case = write_case(tmp_path / "c", max_iter=4, snapshot=0,
                      solver_extra="test_iter: 2\ntest_interval: 2\n")
    (case / "net.prototxt").write_text(TRAIN_VAL)
    np.savez(case / "test.npz", data=randn(2, 4, 3, 5, 5, seed=3),
             label=np.random.default_rng(2).integers(0, 5, (2, 4)).astype(np.float32))
    train(case, "--test-feed", "test.npz", "--log", "train.log")
    log = (case / "train.log").read_text()
    assert log.count("Testing net (#0)") == 3               # iterations 0, 2 and after the last
    assert "Test net output #0: loss = " in log and "Test net output #1: accuracy = " in log
    assert "Iteration 3 (" in log and "Iteration 3, lr = 0.025" in log
    monkeypatch.chdir(case)
    solver = Solver("solver.prototxt", feed=ArrayFeed(dict(np.load("feed.npz"))),
                    test_feeds=[ArrayFeed(dict(np.load("test.npz")))])
    net, gm = solver.test_nets[0]
    assert gm.out.weight is solver.module.out.weight and gm.drop.training is False
    before = solver.test(0)
    solver.step(2)
    assert solver.test(0) != before                         # the test net sees the updates


@pytest.mark.parametrize("flags", [["--precision", "bf16"], ["--precision", "fp16"], ["--channels-last"]])
def test_precision_and_memory_format_train_on_cpu(tmp_path, flags):
    case = write_case(tmp_path / "c", max_iter=3, snapshot=0)
    train(case, "--trace", "t.npz", *flags)
    assert np.isfinite(np.load(case / "t.npz")["loss"]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(tmp_path):
    net = NET.replace('dropout_ratio: 0.3', 'dropout_ratio: 0.0')
    for name, flags in (("cpu", []), ("gpu", ["--gpu", "0"])):
        case = write_case(tmp_path / name, max_iter=3, snapshot=0)
        (case / "net.prototxt").write_text(net)
        train(case, "--trace", "t.npz", *flags)
    a, b = np.load(tmp_path / "cpu/t.npz"), np.load(tmp_path / "gpu/t.npz")
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
    np.testing.assert_allclose(b["iter3/out/0"], a["iter3/out/0"], rtol=1e-3, atol=1e-5)


def test_hdf5_snapshots_resume(tmp_path):
    pytest.importorskip("h5py", reason="snapshot_format HDF5 needs h5py (pip install netdef[hdf5])")
    import h5py
    case = write_case(tmp_path / "c", max_iter=4, snapshot=2, solver_extra="snapshot_format: HDF5\n")
    train(case, "--trace", "whole.npz")
    with h5py.File(case / "snap/small_iter_2.solverstate.h5") as h:
        assert int(h["iter"][()]) == 2 and len(h["history"]) == 7
    with h5py.File(case / "snap/small_iter_2.caffemodel.h5") as h:
        assert h["data/out/0"].shape == (5, 36)
    train(case, "--snapshot", "snap/small_iter_2.solverstate.h5", "--trace", "resumed.npz")
    whole, resumed = np.load(case / "whole.npz"), np.load(case / "resumed.npz")
    assert resumed["loss"].tobytes() == whole["loss"][2:].tobytes()
    assert resumed["iter4/out/0"].tobytes() == whole["iter4/out/0"].tobytes()


def test_solver_on_a_compiled_module(tmp_path, monkeypatch):
    case = write_case(tmp_path / "c", max_iter=3, snapshot=0)
    monkeypatch.chdir(case)
    gm = netdef.load("net.prototxt", phase="TRAIN")
    solver = Solver("solver.prototxt", feed=ArrayFeed(dict(np.load("feed.npz"))), module=gm)
    before = gm.out.weight.detach().clone()
    assert solver.solve()
    assert solver.iter == 3 and not torch.equal(before, gm.out.weight)
    with pytest.raises(netdef.NetdefError, match="phase TRAIN"):
        Solver("solver.prototxt", module=netdef.load("net.prototxt"))


def test_run_on_a_device_in_a_precision(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    np.savez(tmp_path / "in.npz", data=randn(4, 3, 5, 5), label=np.zeros(4, np.float32))
    assert main(["run", str(tmp_path / "net.prototxt"), "--input", str(tmp_path / "in.npz"),
                 "--output", str(tmp_path / "out.npz"), "--device", "cpu", "--precision", "bf16",
                 "--channels-last"]) == 0
    assert np.load(tmp_path / "out.npz")["loss/(automatic)"].dtype == np.float32


def test_nan_in_the_data_names_the_input(tmp_path, capsys):
    case = write_case(tmp_path / "c", max_iter=2, snapshot=0)
    feed = dict(np.load(case / "feed.npz"))
    feed["data"][0, 1, 2, 3, 4] = np.inf
    np.savez(case / "feed.npz", **feed)
    train(case, expect=1)
    err = errors_of(capsys)
    assert "at iteration 1: input blob 'data' is the first to hold a non-finite value" in err
    assert "no snapshot was written" in err


def test_diverging_training_names_the_first_layer_that_overflows(tmp_path, capsys):
    case = write_case(tmp_path / "c", max_iter=6, snapshot=1, solver_extra="")
    text = (case / "solver.prototxt").read_text().replace("base_lr: 0.05", "base_lr: 1e30")
    (case / "solver.prototxt").write_text(text)
    train(case, expect=1)
    err = errors_of(capsys)
    assert "the loss became" in err and ": layer '" in err and "is the first to hold a non-finite value" in err
    kept = sorted(p.name for p in (case / "snap").glob("*.solverstate"))
    assert kept and kept[-1] in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_without_cuda_is_one_error(tmp_path, capsys):
    case = write_case(tmp_path / "c", max_iter=2, snapshot=0)
    train(case, "--gpu", "0", expect=1)
    assert "device cuda:0: this machine has no CUDA device" in errors_of(capsys)
    assert not os.listdir(case / "snap")

"""netdef test (caffe test's scores) and netdef time (caffe time's per-layer figures), and
the device options they share."""
import argparse
import re

import numpy as np
import pytest
import torch

import netdef
from netdef.cli import main
from netdef.commands import add_device_arguments, resolve_device
from netdef.training.timing import time_net
from tests.conftest import GOLDEN, needs_shared
from tests.nets import inputs, layer, randn

GAUSSIAN = 'weight_filler { type: "gaussian" std: 0.5 }'
# Scores three classes; Accuracy's second top is the per-class accuracy (3 values), the
# loss has weight 0.5: caffe test's numbering and loss note both show.
SCORED = 'name: "scored"\n' + inputs(data=(4, 3, 6, 6), label=(4,)) + \
    layer("conv", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 %s }" % GAUSSIAN) + \
    layer("relu", "ReLU", ["conv"], tops=["conv"]) + \
    layer("ip", "InnerProduct", ["conv"], "inner_product_param { num_output: 3 %s }" % GAUSSIAN) + \
    layer("loss", "SoftmaxWithLoss", ["ip", "label"], "loss_weight: 0.5") + \
    layer("accuracy", "Accuracy", ["ip", "label"], tops=["accuracy", "per_class"])

BATCHES = 3


@pytest.fixture
def scored(tmp_path):
    net = tmp_path / "scored.prototxt"
    net.write_text(SCORED)
    weights = tmp_path / "scored.caffemodel"
    netdef.export(netdef.load(net), weights)
    arrays = tmp_path / "in.npz"
    label = np.random.default_rng(1).integers(0, 3, (BATCHES, 4)).astype(np.float32)
    np.savez(arrays, data=randn(BATCHES, 4, 3, 6, 6), label=label)
    return net, weights, arrays


def caffe_lines(out):
    return dict(re.findall(r"^(\w+) = (\S+)", out, re.M))


def test_test_prints_each_batch_and_the_means_as_caffe_test(scored, capsys):
    net, weights, arrays = scored
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays)]) == 0
    out = capsys.readouterr().out
    model = netdef.load(net, weights=weights)
    z = np.load(arrays)
    per_batch = []
    with torch.no_grad():
        for j in range(BATCHES):
            o = model(torch.from_numpy(z["data"][j]), torch.from_numpy(z["label"][j]))
            per_batch.append({k: v.reshape(-1).numpy() for k, v in o.items()})
    assert out.startswith("Running for %d iterations.\n" % BATCHES)
    # every element of every output, per batch, in output order
    batch1 = re.findall(r"^Batch 1, (\w+) = (\S+)$", out, re.M)
    assert [n for n, _ in batch1] == ["loss", "accuracy", "per_class", "per_class", "per_class"]
    assert float(batch1[0][1]) == pytest.approx(per_batch[1]["loss"][0], rel=1e-5)
    mean = {k: np.mean([b[k] for b in per_batch], axis=0) for k in per_batch[0]}
    assert float(re.search(r"^Loss: (\S+)$", out, re.M).group(1)) == pytest.approx(0.5 * mean["loss"][0], rel=1e-5)
    finals = re.findall(r"^(\w+) = (\S+)(.*)$", out, re.M)
    assert [n for n, _, _ in finals] == ["loss", "accuracy", "per_class", "per_class", "per_class"]
    assert float(finals[0][1]) == pytest.approx(mean["loss"][0], rel=1e-5)
    note = re.fullmatch(r" \(\* 0\.5 = (\S+) loss\)", finals[0][2])
    assert float(note.group(1)) == pytest.approx(0.5 * mean["loss"][0], rel=1e-5)
    assert float(finals[1][1]) == pytest.approx(mean["accuracy"][0], rel=1e-5)
    assert [float(v) for _, v, _ in finals[2:]] == pytest.approx(list(mean["per_class"]), rel=1e-5)
    assert finals[1][2] == ""


def test_test_iterations_and_bad_feeds(scored, tmp_path, capsys):
    net, weights, arrays = scored
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays),
                 "--iterations", "2"]) == 0
    assert "Batch 1," in capsys.readouterr().out
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays),
                 "--iterations", "4"]) == 1
    assert "hold 3 batches; --iterations asks for 4" in capsys.readouterr().err
    np.savez(tmp_path / "nolabel.npz", data=randn(2, 4, 3, 6, 6))
    assert main(["test", str(net), "--weights", str(weights), "--input", str(tmp_path / "nolabel.npz")]) == 1
    assert "no array for input blob(s) label" in capsys.readouterr().err
    assert main(["test", str(net), "--weights", str(weights)]) == 1
    assert "give them with --input" in capsys.readouterr().err


@needs_shared
def test_test_scores_the_golden_lenet_batch_as_caffe():
    """Batch 0 of the lenet training case with its initial weights: Caffe's first loss."""
    case = GOLDEN / "train" / "lenet_sgd_inv"
    expected = np.load(case / "expected.npz")["loss"][0]
    import io
    from contextlib import redirect_stdout
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["test", str(case / "net.prototxt"), "--phase", "train", "--weights",
                     str(case / "weights.caffemodel"), "--input", str(case / "batches.npz"),
                     "--iterations", "1"]) == 0
    batch0 = float(re.search(r"^Batch 0, loss = (\S+)$", out.getvalue(), re.M).group(1))
    assert batch0 == pytest.approx(float(expected), rel=1e-5)


# Heavy and light layers, a BatchNorm+Scale pair the backend fuses, and a loss.
TIMED = 'name: "timed"\n' + inputs(data=(16, 512), label=(16,)) + \
    layer("big", "InnerProduct", ["data"], "inner_product_param { num_output: 1024 }") + \
    layer("bn", "BatchNorm", ["big"]) + \
    layer("scale", "Scale", ["bn"], "scale_param { bias_term: true }") + \
    layer("relu", "ReLU", ["scale"], tops=["scale"]) + \
    layer("small", "InnerProduct", ["scale"], "inner_product_param { num_output: 4 }") + \
    layer("loss", "SoftmaxWithLoss", ["small", "label"])


def timed_module(text, phase="TRAIN"):
    from tests.nets import parse_text
    from netdef.training.scoring import outputs_with_losses
    net = parse_text(text, phase=phase)
    return net, netdef.compile_net(net, outputs=outputs_with_losses(net))


def test_time_attributes_forward_and_backward_to_the_layers_that_spend_it():
    # A batch of 64 (TIMED's is 16): the InnerProduct then takes milliseconds, so a time
    # slice lost to another process while the ReLU is timed cannot make the ReLU look the
    # slower of the two (with 16 the comparison failed now and then on a loaded machine).
    net, gm = timed_module(TIMED.replace("dim: 16 dim: 512", "dim: 64 dim: 512").replace("dim: 16 }", "dim: 64 }"))
    timing = time_net(gm, net, 3, torch.device("cpu"))
    names = [n for n, _, _ in timing.layers]
    assert names == ["data", "label", "big", "bn", "scale", "relu", "small", "loss"]
    t = {n: (f, b) for n, f, b in timing.layers}
    assert t["data"] == (0, 0) and t["label"] == (0, 0)
    assert timing.fused == {"bn": "scale"} and t["bn"] == (0, 0)
    for name in ["big", "scale", "relu", "small", "loss"]:
        assert t[name][0] > 0 and t[name][1] > 0, name
    # 64x512x1024 multiply-adds forward, twice that backward, against 64x1024 for the ReLU
    assert t["big"][0] > t["relu"][0] and t["big"][1] > t["relu"][1]
    assert len(timing.iteration_ms) == 3 and timing.forward_ms > 0 and timing.backward_ms > 0
    assert timing.initial_loss == pytest.approx(np.log(4), rel=1e-3)   # zero inputs: uniform scores


def test_time_on_a_net_without_loss_still_times_backward():
    deploy = 'name: "d"\n' + inputs(data=(2, 8)) + \
        layer("ip", "InnerProduct", ["data"], "inner_product_param { num_output: 8 }") + \
        layer("prob", "Softmax", ["ip"])
    net, gm = timed_module(deploy, phase="TEST")
    t = {n: (f, b) for n, f, b in time_net(gm, net, 2, torch.device("cpu")).layers}
    assert t["ip"][1] > 0 and t["prob"][1] > 0


def test_time_command_prints_caffe_times_report(tmp_path, capsys):
    path = tmp_path / "timed.prototxt"
    path.write_text(TIMED)
    assert main(["time", str(path), "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^Iteration: (\d) forward-backward time: \S+ ms\.$", out, re.M) == ["1", "2"]
    assert re.search(r"^\s+big\tforward: [\d.e-]+ ms\.$", out, re.M)
    assert re.search(r"^\s+big\tbackward: [\d.e-]+ ms\.$", out, re.M)
    for line in ["Average Forward pass", "Average Backward pass", "Average Forward-Backward", "Total Time"]:
        assert re.search(r"^%s: [\d.e+-]+ ms\.$" % line, out, re.M), line
    assert "bn in scale" in out
    assert re.search(r"^Memory of a training step \(estimate, with SGD's history\): [\d.]+ \w+ \(weights", out, re.M)


def device_args(*argv):
    p = argparse.ArgumentParser()
    add_device_arguments(p)
    return p.parse_args(list(argv))


def test_device_options():
    assert resolve_device(device_args()) == torch.device("cpu")
    assert resolve_device(device_args("--device", "cpu")) == torch.device("cpu")
    with pytest.raises(netdef.NetdefError, match="unknown device"):
        resolve_device(device_args("--device", "tpu0"))
    with pytest.raises(argparse.ArgumentTypeError, match="torchrun"):
        resolve_device(device_args("--gpu", "0,1"))
    with pytest.raises(argparse.ArgumentTypeError, match="not both"):
        resolve_device(device_args("--gpu", "0", "--device", "cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(netdef.NetdefError, match="no CUDA device"):
            resolve_device(device_args("--gpu", "0"))
    else:
        assert resolve_device(device_args("--gpu", "0")) == torch.device("cuda", 0)
        with pytest.raises(netdef.NetdefError, match="numbered"):
            resolve_device(device_args("--device", "cuda:%d" % torch.cuda.device_count()))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_test_and_run_in_lower_precision_stay_close(scored, tmp_path, capsys, precision):
    net, weights, arrays = scored
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays)]) == 0
    exact = caffe_lines(capsys.readouterr().out)
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays),
                 "--precision", precision, "--channels-last"]) == 0
    low = caffe_lines(capsys.readouterr().out)
    assert float(low["loss"]) == pytest.approx(float(exact["loss"]), rel=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_test_and_time_on_cuda(scored, capsys):
    net, weights, arrays = scored
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays)]) == 0
    cpu = caffe_lines(capsys.readouterr().out)
    assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays), "--device", "cuda"]) == 0
    cuda = caffe_lines(capsys.readouterr().out)
    assert float(cuda["loss"]) == pytest.approx(float(cpu["loss"]), rel=1e-4)
    assert main(["time", str(net), "--iterations", "2", "--gpu", "0"]) == 0
    assert "Average Forward-Backward" in capsys.readouterr().out


def test_training_step_memory_counts_what_a_real_step_keeps():
    from netdef.training.memory import training_step_memory
    net, gm = timed_module(TIMED)
    before = gm.bn.mean.clone()
    est = training_step_memory(gm, {"data": (16, 512), "label": (16,)}, history_sets=2)
    assert torch.equal(gm.bn.mean, before)                      # the module itself is untouched
    learnable = sum(p.numel() * 4 for p in gm.parameters())
    assert est.gradients == learnable and est.history == 2 * learnable
    assert est.weights == learnable + sum(b.numel() * b.element_size() for b in gm.buffers())
    assert est.inputs == 4 * (16 * 512 + 16)
    # the same count on a real CPU step: the storages autograd keeps, weights excluded
    own = {t.untyped_storage().data_ptr() for t in list(gm.parameters()) + list(gm.buffers())}
    kept = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            kept[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        gm(torch.randn(16, 512), torch.zeros(16))
    assert est.activations == sum(kept.values()) > 16 * 1024 * 4
    assert est.total == est.weights + est.gradients + est.history + est.activations + est.inputs


@needs_shared
def test_test_reads_data_layers_as_caffe_test(tmp_path, monkeypatch, capsys):
    """A net whose inputs are data layers needs no --input: the HDF5Data case's batches,
    read pass after pass (crossing files, wrapping the list), are scored; each top's mean
    over the passes is the mean of Caffe's batches."""
    import shutil
    pytest.importorskip("h5py", reason="HDF5Data needs h5py (pip install netdef[data])")
    case = tmp_path / "case"
    shutil.copytree(GOLDEN / "data" / "hdf5_two_tops_wrap", case)
    monkeypatch.chdir(case)          # Caffe resolves the source against the working directory
    netdef.export(netdef.load("net.prototxt", phase="TEST"), "w.caffemodel")
    capsys.readouterr()
    assert main(["test", "net.prototxt", "--weights", "w.caffemodel", "--iterations", "4"]) == 0
    out = capsys.readouterr().out
    expected = np.load("expected.npz")
    for top in ("data", "label"):
        means = [float(v) for v in re.findall(r"^%s = (\S+)" % top, out, re.M)]
        want = np.mean([expected["iter%d/%s" % (k, top)] for k in range(1, 5)], axis=0).ravel()
        np.testing.assert_allclose(means, want, rtol=1e-5, atol=1e-6)
    assert len(re.findall(r"^Batch 3, label = ", out, re.M)) == 3


def test_test_seed_repeats_dropout_in_train(tmp_path, capsys):
    net = tmp_path / "drop.prototxt"
    net.write_text('name: "drop"\n' + inputs(data=(4, 64)) +
                   layer("drop", "Dropout", ["data"], tops=["drop"]) +
                   layer("ip", "InnerProduct", ["drop"], "inner_product_param { num_output: 2 %s }" % GAUSSIAN))
    weights = tmp_path / "drop.caffemodel"
    netdef.export(netdef.load(net), weights)
    arrays = tmp_path / "in.npz"
    np.savez(arrays, data=randn(2, 4, 64))

    def scores(*seed):
        assert main(["test", str(net), "--weights", str(weights), "--input", str(arrays), "--phase", "train",
                     *seed]) == 0
        return capsys.readouterr().out
    assert scores("--seed", "3") == scores("--seed", "3") == scores("--seed", "3")
    assert scores("--seed", "4") != scores("--seed", "3")
    assert scores() == scores()                 # the fixed default seed

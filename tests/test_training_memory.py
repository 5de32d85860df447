"""The memory of a training step, counted from the shapes (compiler.accounting), against the
same step measured on PyTorch's meta device (netdef.training.memory), and the budget and
summary that use the count."""
import pytest

import netdef
from compiler.accounting import human_bytes, training_step_bytes
from compiler.backends.summary import summarize
from compiler.errors import NetdefError
from netdef.cli import main
from netdef.training.memory import training_step_memory
from tests.conftest import CORPUS, GOLDEN, needs_shared
from tests.nets import inputs, layer, parse_text

CONV_NET = 'name: "c"\n' + inputs(data=(8, 3, 32, 32), label=(8,)) + \
    layer("conv", "Convolution", ["data"], "convolution_param { num_output: 16 kernel_size: 3 pad: 1 }") + \
    layer("relu", "ReLU", ["conv"], tops=["conv"]) + \
    layer("pool", "Pooling", ["conv"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }") + \
    layer("ip", "InnerProduct", ["pool"], "inner_product_param { num_output: 10 }") + \
    layer("loss", "SoftmaxWithLoss", ["ip", "label"])


def measured(net, history_sets=1):
    gm = netdef.compile_net(net)
    return training_step_memory(gm, {net.blobs[t].name: net.blobs[t].shape for t in net.inputs}, history_sets)


def assert_close(net, history_sets=1):
    counted, meta = training_step_bytes(net, history_sets), measured(net, history_sets)
    assert (counted.weights, counted.gradients, counted.inputs) == (meta.weights, meta.gradients, meta.inputs)
    # The count also keeps history for BatchNorm's statistics, as the Solver does.
    assert meta.history <= counted.history == counted.weights * history_sets
    assert 0.8 <= counted.total / meta.total <= 1.2, (counted, meta)
    return counted


def test_training_step_count_follows_the_measured_step():
    net = parse_text(CONV_NET, phase="TRAIN")
    counted = assert_close(net, history_sets=2)
    # Max pooling keeps its int64 indices: two float32s per output element.
    without = parse_text(CONV_NET.replace("pool: MAX", "pool: AVE"), phase="TRAIN")
    assert counted.activations - training_step_bytes(without).activations == 2 * 4 * 8 * 16 * 16 * 16



def bn_block(i, bottom, scale=True):
    top = "conv%d" % i
    return layer(top, "Convolution", [bottom], "convolution_param { num_output: 16 kernel_size: 3 pad: 1 }") + \
        layer("bn%d" % i, "BatchNorm", [top], tops=[top]) + \
        (layer("sc%d" % i, "Scale", [top], "scale_param { bias_term: true }", tops=[top]) if scale else "") + \
        layer("relu%d" % i, "ReLU", [top], tops=[top])


def test_training_step_count_follows_the_module_where_caffe_writes_in_place():
    # Caffe writes BatchNorm, Scale and ReLU onto the convolution's blob: one buffer. The
    # module computes batch norm (with its Scale, in one call, or alone) into a new tensor,
    # which its backward and the next convolution's both read: two, as the count now says
    # (it said one, 0.72 of the measured step).
    text = 'name: "bn"\n' + inputs(data=(8, 16, 32, 32), label=(8,)) + \
        "".join(bn_block(i, "data" if i == 0 else "conv%d" % (i - 1), scale=i != 2) for i in range(4)) + \
        layer("ip", "InnerProduct", ["conv3"], "inner_product_param { num_output: 10 }") + \
        layer("loss", "SoftmaxWithLoss", ["ip", "label"])
    assert_close(parse_text(text, phase="TRAIN"))


@needs_shared
def test_training_step_count_of_lenet_and_resnet50():
    assert_close(netdef.parse(GOLDEN / "train" / "lenet_sgd_inv" / "net.prototxt", "TRAIN"))
    text = (CORPUS / "resnet" / "ResNet-50-deploy.prototxt").read_text()
    text = text.replace("use_global_stats: true", "use_global_stats: false")
    resnet = parse_text(text, phase="TRAIN", input_shapes={"data": (2, 3, 224, 224)})
    assert_close(resnet)


def test_budget_of_a_train_net_is_its_training_step(tmp_path, capsys):
    path = tmp_path / "c.prototxt"
    path.write_text(CONV_NET)
    step = training_step_bytes(netdef.parse(path, "TRAIN")).total
    assert netdef.parse(path, "TRAIN", max_memory=step).layers
    with pytest.raises(NetdefError, match="a training step of the net needs"):
        netdef.parse(path, "TRAIN", max_memory=step - 1)
    # The TEST net of the same file keeps the inference figure, which is smaller.
    assert netdef.parse(path, "TEST", max_memory=step - 1).layers
    assert main(["summary", str(path), "--phase", "train"]) == 0
    assert "a training step (SGD) needs %s" % human_bytes(step) in capsys.readouterr().out
    assert summarize(netdef.parse(path, "TRAIN"))[1]["training_step"]["total"] == step
    assert summarize(netdef.parse(path))[1]["training_step"] is None


def test_train_refuses_a_step_over_the_budget_with_the_solver_types_history(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(CONV_NET)
    sgd = training_step_bytes(netdef.parse("net.prototxt", "TRAIN"))
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                                              'max_iter: 1\ntype: "Adam"\n')
    # SGD's step fits; Adam keeps a second history set, which does not.
    assert main(["train", "solver.prototxt", "--max-memory", str(sgd.total)]) == 1
    err = capsys.readouterr().err
    assert "a training step of the net needs %s" % human_bytes(sgd.total + sgd.weights) in err
    assert "over the %s memory budget" % human_bytes(sgd.total) in err

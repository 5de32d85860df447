"""Transfer learning on real data, measured: scikit-learn's 8x8 digits (bundled in its
wheel, nothing fetched).

1. "Pretrained" net: a small LeNet trained on digits 0-4.
2. Fine-tuned to digits 5-9 from only 10 labelled images per class (50 images), in the
   three regimes `netdef finetune --freeze` offers (all: only the new head learns; up to
   conv2; none: everything learns from the pretrained start), and the same net trained
   from scratch on the same 50 images. Test accuracy on every other 5-9 digit.
3. The feature cache: the frozen trunk's `ip1` computed once (netdef/inference/features),
   the head trained on it, against the same head trained through the frozen trunk: the
   same weights, and the speed-up.

    python examples/transfer_digits.py          # needs scikit-learn (the examples extra)

It prints a Markdown table (README, "Worked example: transfer on digits").
"""
import os
import sys
import tempfile
import time

import numpy as np
import torch

import netdef
from netdef.cli import main
from netdef.training.feed import ArrayFeed
from netdef.training.solver import Solver

NET = '''name: "digits"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %(batch)d dim: 1 dim: 8 dim: 8 } shape { dim: %(batch)d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu_c1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu_c2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 100 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''
# The head alone, trained on cached ip1 features.
HEAD = '''name: "head"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %(batch)d dim: 100 } shape { dim: %(batch)d } } }
layer { name: "ip2_ft" type: "InnerProduct" bottom: "data" top: "ip2"
  param { lr_mult: 10 decay_mult: 1 } param { lr_mult: 20 decay_mult: 0 }
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''
SOLVER = '''net: "%(net)s"
base_lr: %(lr)g
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: %(iters)d
snapshot_after_train: false
random_seed: 1
'''
PRETRAIN_ITERS, FINETUNE_ITERS, SHOTS = 600, 150, 10


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), d.target


def train(net_file, data, labels, iters, batch, weights=None, lr=0.01, seed=0):
    """Train `net_file` with Caffe's SGD on random batches of (data, labels); -> (module, seconds)."""
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(len(data), batch, replace=len(data) < batch) for _ in range(iters)])
    feed = ArrayFeed({"data": data[picks], "label": labels[picks].astype(np.float32)})
    solver_file = net_file + ".solver.prototxt"
    with open(solver_file, "w") as f:
        f.write(SOLVER % {"net": os.path.abspath(net_file), "lr": lr, "iters": iters})
    start = time.perf_counter()
    solver = Solver(solver_file, feed=feed, weights=weights)
    solver.solve()
    return solver.module, time.perf_counter() - start


def accuracy(module, net_file, data, labels):
    """Test accuracy of a trained module's weights, in the TEST phase, on all of `data`."""
    weights = net_file + ".caffemodel"
    netdef.export(module, weights)
    gm = netdef.load(net_file, weights=weights, outputs=["ip2"],
                     input_shapes={"data": data.shape, "label": (len(data),)})
    with torch.no_grad():
        scores = gm(torch.from_numpy(data), torch.zeros(len(data)))["ip2"]
    return float((scores.argmax(1).numpy() == labels).mean())


def write(folder, name, text, **values):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text % values)
    return path


def run(folder):
    x, y = digits()
    rng = np.random.default_rng(0)
    source = np.flatnonzero(y < 5)
    rng.shuffle(source)
    cut = int(0.7 * len(source))
    net = write(folder, "pretrain.prototxt", NET, batch=64)
    module, seconds = train(net, x[source[:cut]], y[source[:cut]], PRETRAIN_ITERS, 64)
    rows = [("pretrained on 0-4 (%d images)" % cut, accuracy(module, net, x[source[cut:]], y[source[cut:]]), seconds)]
    netdef.export(module, os.path.join(folder, "pretrained.caffemodel"))
    pretrained = os.path.join(folder, "pretrained.caffemodel")

    target = np.flatnonzero(y >= 5)
    rng.shuffle(target)
    few = np.concatenate([target[y[target] == c][:SHOTS] for c in range(5, 10)])
    rest = np.setdiff1d(target, few)
    x_few, y_few, x_rest, y_rest = x[few], y[few] - 5, x[rest], y[rest] - 5
    base = write(folder, "target.prototxt", NET, batch=len(few))
    for regime, label in (("all", "fine-tune, head only (--freeze all)"),
                          ("pool2", "fine-tune, conv layers frozen (--freeze pool2)"),
                          ("none", "fine-tune everything (--freeze none)")):
        ft = os.path.join(folder, "ft_%s.prototxt" % regime)
        assert main(["finetune", base, "--classes", "5", "--freeze", regime, "-o", ft]) == 0
        module, seconds = train(ft, x_few, y_few, FINETUNE_ITERS, len(few), weights=pretrained)
        rows.append(("%s, %d images" % (label, len(few)), accuracy(module, ft, x_rest, y_rest), seconds))
    module, seconds = train(base, x_few, y_few, FINETUNE_ITERS, len(few))
    rows.append(("from scratch, %d images" % len(few), accuracy(module, base, x_rest, y_rest), seconds))

    # The feature cache: the frozen trunk runs once; the head then trains on its ip1.
    start = time.perf_counter()
    trunk = netdef.load(base, weights=pretrained, outputs=["ip1"])
    with torch.no_grad():
        cached = trunk(torch.from_numpy(x_few), torch.zeros(len(few)))["ip1"].numpy()
    head = write(folder, "head.prototxt", HEAD, batch=len(few))
    head_module, head_seconds = train(head, cached, y_few, FINETUNE_ITERS, len(few), seed=0)
    cache_seconds = time.perf_counter() - start
    # The same head trained through the frozen trunk, from the same initial head weights.
    init = os.path.join(folder, "head_init.caffemodel")
    head_init = Solver(write(folder, "head_init.solver.prototxt", SOLVER, net=head, lr=0.01,
                             iters=1)).module      # built, not stepped: its fillers
    netdef.export(head_init, init)
    through, through_seconds = train(os.path.join(folder, "ft_all.prototxt"), x_few, y_few, FINETUNE_ITERS,
                                     len(few), weights=pretrained + "," + init, seed=0)
    difference = float((head_module.ip2_ft.weight - through.ip2_ft.weight).abs().max())
    return rows, cache_seconds, through_seconds, difference


def main_example():
    with tempfile.TemporaryDirectory() as folder:
        rows, cache_seconds, through_seconds, difference = run(folder)
    print("| run | test accuracy | train time |")
    print("|---|---|---|")
    for name, acc, seconds in rows:
        print("| %s | %.1f%% | %.1f s |" % (name, 100 * acc, seconds))
    print()
    print("feature cache: head trained on cached ip1 in %.2f s (trunk pass included) against %.2f s through "
          "the frozen trunk: %.1fx; largest head weight difference %.1e"
          % (cache_seconds, through_seconds, through_seconds / cache_seconds, difference))


if __name__ == "__main__":
    sys.exit(main_example())

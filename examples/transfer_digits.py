"""Transfer learning on real data, measured: scikit-learn's handwritten digits (bundled in
its wheel, nothing fetched), scaled to 28x28 as the acceptance run scales them, and
Caffe's LeNet (two 5x5 convolutions, 500 hidden units).

1. "Pretrained" net: LeNet trained on digits 0-4 (90% of them; the rest scores it),
   each image shifted by up to SHIFT pixels at random, as nets meant to be reused are
   trained with augmentation.
2. Fine-tuned to digits 5-9 from only 10 labelled images per class (50 images), in the
   three regimes `netdef finetune --freeze` offers (all: only the new head learns; up to
   pool2: the convolutions stay; none: everything learns from the pretrained start), and
   the same net trained from scratch on the same 50 images. Every regime gets the same
   iterations and the same search for its learning rate: each rate of RATES is scored by
   2-fold cross-validation on the first draw's 50 images (train on 5 per class, score the
   other 5, and back) and the best is used for every draw; the test images never choose
   anything. SEEDS draws of the 50 images (each with its own initial weights and batch
   order) give the mean and spread of the test accuracy on every other 5-9 digit.
3. The feature cache: the frozen trunk's `ip1` computed once (as netdef features does),
   the head trained on it, against the same head trained through the frozen trunk: the
   same weights, and the speed-up.

    python examples/transfer_digits.py [--iterations 30] [--draws 3]     # the examples extra

It prints Markdown tables (README, "Worked example, measured").
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

# Caffe's examples/mnist/lenet_train_test.prototxt, its data layers an Input of arrays.
NET = """name: "LeNet"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %(batch)d dim: 1 dim: 28 dim: 28 } shape { dim: %(batch)d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
# The head alone, trained on cached ip1 features.
HEAD = """name: "head"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %(batch)d dim: 500 } shape { dim: %(batch)d } } }
layer { name: "ip2_ft" type: "InnerProduct" bottom: "data" top: "ip2"
  param { lr_mult: 10 decay_mult: 1 } param { lr_mult: 20 decay_mult: 0 }
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
SOLVER = """net: "%(net)s"
base_lr: %(lr)g
momentum: 0.9
weight_decay: 0.0005
lr_policy: "fixed"
max_iter: %(iters)d
snapshot_after_train: false
random_seed: %(seed)d
"""
PRETRAIN_ITERS, FINETUNE_ITERS, SHOTS, SHIFT = 600, 30, 10, 3
RATES = (0.001, 0.01)           # the learning rates every regime chooses from
SEEDS = 3
REGIMES = (("all", "fine-tune, head only (`--freeze all`)"),
           ("pool2", "fine-tune, convolutions frozen (`--freeze pool2`)"),
           ("none", "fine-tune everything (`--freeze none`)"),
           (None, "from scratch"))


def digits():
    """The 1,797 digits as 28x28 images scaled as Caffe's LeNet reads them (x/256), as
    make_digits.py writes them for the acceptance run; and their labels."""
    import cv2
    from sklearn.datasets import load_digits
    d = load_digits()
    images = [cv2.resize(np.round(im * (255.0 / 16.0)).astype(np.uint8), (28, 28)) for im in d.images]
    return (np.stack(images)[:, None] * np.float32(1 / 256)).astype(np.float32), d.target


def shifted(images, rng, shift):
    """Each image moved by up to `shift` pixels each way at random (zeros come in)."""
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    dy, dx = rng.integers(0, 2 * shift + 1, n), rng.integers(0, 2 * shift + 1, n)
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train(net_file, data, labels, iters, batch, weights=None, lr=0.01, seed=0, shift=0):
    """Train `net_file` with Caffe's SGD on random batches of (data, labels), shifted by up
    to `shift` pixels when asked; `seed` draws the batches and the fillers. -> (module, seconds)."""
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(len(data), batch, replace=len(data) < batch) for _ in range(iters)])
    batches = data[picks]
    if shift:
        batches = np.stack([shifted(b, rng, shift) for b in batches])
    feed = ArrayFeed({"data": batches, "label": labels[picks].astype(np.float32)})
    solver_file = net_file + ".solver.prototxt"
    with open(solver_file, "w") as f:
        f.write(SOLVER % {"net": os.path.abspath(net_file), "lr": lr, "iters": iters, "seed": seed + 1})
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


def regime_nets(folder, batch):
    """{regime: net file} for training on `batch` images: netdef finetune's three regimes
    of the target LeNet, and the target LeNet itself (from scratch)."""
    base = write(folder, "target_%d.prototxt" % batch, NET, batch=batch)
    nets = {None: base}
    for regime, _ in REGIMES[:-1]:
        nets[regime] = os.path.join(folder, "ft_%s_%d.prototxt" % (regime, batch))
        assert main(["finetune", base, "--classes", "5", "--freeze", regime, "-o", nets[regime]]) == 0
    return nets


def choose_rate(nets, regime, weights, x, y, seed, iters):
    """The rate of RATES with the best 2-fold cross-validated accuracy on (x, y), SHOTS
    images per class in class order: each fold trains on half of every class's images
    and scores the other half. -> (rate, {rate: accuracy})."""
    first = np.arange(len(x)) % SHOTS < SHOTS // 2
    scores = {}
    for lr in RATES:
        folds = [(first, ~first), (~first, first)]
        scores[lr] = np.mean([accuracy(train(nets[regime], x[a], y[a], iters, int(a.sum()), weights,
                                             lr, seed)[0], nets[regime], x[b], y[b]) for a, b in folds])
    return max(RATES, key=lambda lr: (scores[lr], -lr)), scores


def run(folder, iters=FINETUNE_ITERS, seeds=SEEDS):
    x, y = digits()
    rng = np.random.default_rng(0)
    source = np.flatnonzero(y < 5)
    rng.shuffle(source)
    cut = int(0.9 * len(source))
    net = write(folder, "pretrain.prototxt", NET, batch=64)
    module, seconds = train(net, x[source[:cut]], y[source[:cut]], PRETRAIN_ITERS, 64, shift=SHIFT)
    pretrained = os.path.join(folder, "pretrained.caffemodel")
    netdef.export(module, pretrained)
    pretraining = (cut, len(source) - cut, accuracy(module, net, x[source[cut:]], y[source[cut:]]), seconds)

    target = np.flatnonzero(y >= 5)
    full, half = regime_nets(folder, 5 * SHOTS), regime_nets(folder, 5 * SHOTS // 2)
    results = {regime: [] for regime, _ in REGIMES}     # [(test accuracy, seconds)] per draw
    rates = {}                                          # {regime: (rate, {rate: cv accuracy})}
    for seed in range(seeds):
        order = target[np.random.default_rng(100 + seed).permutation(len(target))]
        few = np.concatenate([order[y[order] == c][:SHOTS] for c in range(5, 10)])
        rest = np.setdiff1d(target, few)
        x_few, y_few = x[few], y[few] - 5
        for regime, _ in REGIMES:
            weights = pretrained if regime else None
            if seed == 0:
                rates[regime] = choose_rate(half, regime, weights, x_few, y_few, seed, iters)
            module, seconds = train(full[regime], x_few, y_few, iters, len(few), weights,
                                    rates[regime][0], seed)
            results[regime].append((accuracy(module, full[regime], x[rest], y[rest] - 5), seconds))
        if seed == 0:
            cache = feature_cache(folder, full, pretrained, x_few, y_few, rates["all"][0], iters)
    return pretraining, results, rates, cache


def feature_cache(folder, nets, pretrained, x_few, y_few, lr, iters):
    """Train the head on ip1 computed once by the frozen trunk, and through the trunk:
    -> (seconds with the cache, trunk pass included; seconds through the trunk; largest
    weight difference)."""
    start = time.perf_counter()
    trunk = netdef.load(nets[None], weights=pretrained, outputs=["ip1"])
    with torch.no_grad():
        cached = trunk(torch.from_numpy(x_few), torch.zeros(len(x_few)))["ip1"].numpy()
    head = write(folder, "head.prototxt", HEAD, batch=len(x_few))
    head_module, _ = train(head, cached, y_few, iters, len(x_few), lr=lr)
    cache_seconds = time.perf_counter() - start
    # The same head trained through the frozen trunk, from the same initial head weights.
    init = os.path.join(folder, "head_init.caffemodel")
    head_init = Solver(write(folder, "head_init.solver.prototxt", SOLVER, net=head, lr=lr, iters=1,
                             seed=1)).module      # built, not stepped: its fillers
    netdef.export(head_init, init)
    through, through_seconds = train(nets["all"], x_few, y_few, iters, len(x_few),
                                     weights=pretrained + "," + init, lr=lr)
    return cache_seconds, through_seconds, float((head_module.ip2_ft.weight - through.ip2_ft.weight).detach().abs().max())


def main_example():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=FINETUNE_ITERS, help="fine-tuning iterations, every regime")
    parser.add_argument("--draws", type=int, default=SEEDS, help="draws of the 50 images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (images, held_out, pre_accuracy, pre_seconds), results, rates, cache = run(folder, args.iterations, args.draws)
    print("pretrained on 0-4: %d images, %d iterations, %.1f%% on the other %d, %.1f s\n"
          % (images, PRETRAIN_ITERS, 100 * pre_accuracy, held_out, pre_seconds))
    print("| run (50 images of 5-9, %d iterations) | learning rate (2-fold CV accuracy of each) "
          "| test accuracy, mean ± sd of %d draws | per draw | train time |" % (args.iterations, len(results[None])))
    print("|---|---|---|---|---|")
    for regime, name in REGIMES:
        acc = np.array([r[0] for r in results[regime]])
        rate, scores = rates[regime]
        print("| %s | %g (%s) | %.1f%% ± %.1f | %s | %.1f s |"
              % (name, rate, ", ".join("%g: %.0f%%" % (lr, 100 * a) for lr, a in scores.items()),
                 100 * acc.mean(), 100 * acc.std(ddof=1) if len(acc) > 1 else 0.0,
                 ", ".join("%.1f" % (100 * a) for a in acc), np.mean([r[1] for r in results[regime]])))
    cache_seconds, through_seconds, difference = cache
    print("\nfeature cache: head trained on cached ip1 in %.2f s (trunk pass included) against %.2f s through "
          "the frozen trunk: %.1fx; largest head weight difference %.1e"
          % (cache_seconds, through_seconds, through_seconds / cache_seconds, difference))


if __name__ == "__main__":
    sys.exit(main_example())

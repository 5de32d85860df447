"""Training iterations: netdef against a hand-written PyTorch model trained with
torch.optim.SGD on the same data, in one process with the iterations interleaved.

Nets: LeNet (lenet_train_test's layers, Input layers for data and label, batch --lenet-batch)
and ResNet-50 (ResNet-50-deploy.prototxt made a training net: BatchNorm on batch statistics,
SoftmaxWithLoss on fc1000, batch --resnet-batch at 224x224). Both sides start from the same
weights (LeNet: the golden case's; ResNet-50: the golden recipe) and are checked to compute
the same first loss before anything is timed. One iteration is: clear the gradients, forward,
backward, SGD update with momentum 0.9 and weight decay 5e-4 (LeNet's biases at lr_mult 2).

Contenders:
- hand: the hand-written model, F.cross_entropy, torch.optim.SGD (PyTorch's defaults);
- module: netdef's compiled module in the same loop with the same torch.optim.SGD: what a
  user who trains a compiled net in their own loop gets;
- solver: netdef's Solver (Caffe's update arithmetic), one `step(1)` per iteration, fed
  the same batch.

Ratios are hand-written time / netdef time (higher is better); target 0.95.
"""
import argparse
import re

import numpy as np
import torch
import torch.nn.functional as F

from common import GOLDEN, RESNET50, SCRATCH, emit, interleaved, median, recipe_weights

import netdef
from compiler.backends.torch_weights import module_blobs
from handwritten_lenet import LeNet, copy_caffe_blobs as copy_lenet, param_groups as lenet_groups
from handwritten_resnet50 import ResNet50, copy_caffe_blobs as copy_resnet

LENET_CASE = GOLDEN / "train" / "lenet_sgd_inv"
# A small rate: every iteration trains on the same batch, which a larger one drives to NaN.
LR, MOMENTUM, WEIGHT_DECAY = 0.001, 0.9, 5e-4
SOLVER = """net: "{net}"
base_lr: {lr}
momentum: {momentum}
weight_decay: {decay}
lr_policy: "fixed"
max_iter: 1000000
display: 0
snapshot_prefix: "{prefix}"
"""


def resnet50_train_prototxt(batch):
    """ResNet-50-deploy.prototxt as a training net: Input layers for data and label instead
    of the legacy input, BatchNorm on batch statistics, SoftmaxWithLoss instead of prob."""
    text = RESNET50.read_text()
    text = re.sub(r'input:\s*"data"\s*(input_dim:\s*\d+\s*)+', "", text, count=1)
    text = text.replace("use_global_stats: true", "use_global_stats: false")
    head, prob = text.rsplit("layer {", 1)
    assert '"Softmax"' in prob, "the last layer of ResNet-50-deploy.prototxt is no longer prob"
    inputs = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %d dim: 3 '
              'dim: 224 dim: 224 } } }\nlayer { name: "label" type: "Input" top: "label" '
              'input_param { shape { dim: %d } } }\n' % (batch, batch))
    loss = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1000" bottom: "label" top: "loss" }\n'
    path = SCRATCH / ("resnet50_train_b%d.prototxt" % batch)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path.write_text(inputs + head + loss)
    return path


def data(batch, shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32))
    label = torch.from_numpy(rng.integers(0, classes, batch).astype(np.float32))
    return x, label


def lenet(batch):
    net_file = LENET_CASE / "net.prototxt"
    weights = str(LENET_CASE / "weights.caffemodel")
    x, label = data(batch, (1, 28, 28), 10, 0)
    shapes = {"data": tuple(x.shape), "label": tuple(label.shape)}
    net = netdef.parse(net_file, "TRAIN", shapes)
    gm = netdef.compile_net(net, weights)
    hand = copy_lenet(LeNet(), module_blobs(net, gm)).train()
    return net_file, shapes, weights, gm, hand, lenet_groups(hand, LR), x, label


def resnet50(batch):
    net_file = resnet50_train_prototxt(batch)
    weights = recipe_weights("resnet50")
    x, label = data(batch, (3, 224, 224), 1000, 0)
    net = netdef.parse(net_file, "TRAIN")
    gm = netdef.compile_net(net, weights)
    hand = copy_resnet(ResNet50(), module_blobs(net, gm)).train()
    return net_file, None, weights, gm, hand, [{"params": list(hand.parameters()), "lr": LR}], x, label


def module_groups(gm):
    """torch.optim param groups with the net's lr_mult: Caffe's lenet gives biases 2x."""
    net = netdef.record(gm).net
    groups = {}
    for name, p in gm.named_parameters():
        if not p.requires_grad:
            continue
        layer = net.layer(netdef.record(gm).layer_names[name.split(".")[0]])
        index = 0 if name.endswith("weight") else 1
        spec = layer.param.param[index] if index < len(layer.param.param) else None
        mult = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else 1.0
        groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": LR * mult} for mult, ps in groups.items()]


def sgd_solver(net_file, input_shapes, weights, x, label, folder):
    """netdef's Solver with SGD at LR, MOMENTUM, WEIGHT_DECAY on `net_file`, fed the same
    batch at every pass."""
    from netdef.training.solver import Solver
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "solver.prototxt"
    path.write_text(SOLVER.format(net=net_file, lr=LR, momentum=MOMENTUM, decay=WEIGHT_DECAY,
                                  prefix=folder / "snapshot"))
    arrays = {"data": x.numpy(), "label": label.numpy()}
    return Solver(str(path), feed=lambda j: arrays, weights=[weights] if weights is not None else None,
                  input_shapes=input_shapes)


def check_same_loss(name, got, want):
    if not abs(got - want) <= 1e-4 * max(1.0, abs(want)):
        raise SystemExit("%s: first losses differ (%g vs hand-written %g): not benchmarking" % (name, got, want))


def contenders(setup, batch):
    net_file, shapes, weights, gm, hand, hand_groups, x, label = setup(batch)
    with torch.no_grad():
        want = F.cross_entropy(hand.logits(x), label.long()).item()
        check_same_loss(setup.__name__ + " module", gm(x, label)["loss"].item(), want)
    solver = sgd_solver(net_file, shapes, weights, x, label, SCRATCH / ("train-bench-" + setup.__name__))
    check_same_loss(setup.__name__ + " solver", solver.step(1)[0], want)
    hand_opt = torch.optim.SGD(hand_groups, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    module_opt = torch.optim.SGD(module_groups(gm), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    target = label.long()

    def hand_step():
        hand_opt.zero_grad(set_to_none=True)
        F.cross_entropy(hand.logits(x), target).backward()
        hand_opt.step()

    def module_step():
        module_opt.zero_grad(set_to_none=True)
        gm(x, label)["loss"].backward()
        module_opt.step()

    return {"hand": hand_step, "module": module_step, "solver": lambda: solver.step(1)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lenet-batch", type=int, default=64)
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", choices=["lenet", "resnet50"])
    parser.add_argument("--threads", type=int,
                        help="PyTorch threads (default: PyTorch's); 1 steadies the figures on a shared machine, "
                             "where threads wait on each other's descheduled peers")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = [("LeNet", lenet, args.lenet_batch, args.rounds * 10), ("ResNet-50", resnet50, args.resnet_batch, args.rounds)]
    for label, setup, batch, rounds in runs:
        if args.only and setup.__name__ != args.only:
            continue
        steps = contenders(setup, batch)
        times = interleaved(steps, rounds, warmup=2)
        t = {k: median(v) * 1e3 for k, v in times.items()}
        note = "batch %d, %d threads, median of %d interleaved" % (batch, torch.get_num_threads(), rounds)
        emit("training iteration, %s, Solver" % label, round(t["solver"], 2), "ms",
             "hand-written + torch.optim.SGD", round(t["hand"], 2), round(t["hand"] / t["solver"], 3), 0.95, note)
        emit("training iteration, %s, module + torch.optim.SGD" % label, round(t["module"], 2), "ms",
             "hand-written + torch.optim.SGD", round(t["hand"], 2), round(t["hand"] / t["module"], 3), 0.95, note)


if __name__ == "__main__":
    main()

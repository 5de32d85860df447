"""Eager forward of the compiled ResNet-50, plain and fast path, against the hand-written
one, in one process with the calls interleaved.

All three hold the same weights (the golden cases' recipe, copied from the compiled module
into the hand-written one) and are checked to compute the same logits before anything is
timed. Batch --batch x 3 x 224 x 224, torch.no_grad(), eval(). Ratios are hand-written
time / compiled time (higher is better): targets 0.98 for the plain module, 1.25 for the
fast path. A last row, without a target, puts the fast path against the hand-written model
moved to channels_last as well, to show what the folding gives beyond the layout.
"""
import copy
import argparse

import numpy as np
import torch

from common import RESNET50, emit, interleaved, median, recipe_weights

import netdef
from compiler.backends.torch_weights import module_blobs
from handwritten_resnet50 import ResNet50, copy_caffe_blobs


def logits_of(hand):
    """The hand-written model returns probabilities; capture its fc output too."""
    seen = {}
    hand.fc.register_forward_hook(lambda m, i, o: seen.__setitem__("fc1000", o))
    return seen


def check_close(name, got, want):
    """The golden cases' rule: |got - want| <= 1e-4 * max(1, max |want|) + 1e-5."""
    tol = 1e-4 * max(1.0, want.abs().max().item()) + 1e-5
    err = (got - want).abs().max().item()
    if not err <= tol:
        raise SystemExit("%s: outputs differ (max error %g > %g): not benchmarking" % (name, err, tol))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    weights = recipe_weights("resnet50")
    net = netdef.parse(RESNET50, input_shapes={"data": (args.batch, 3, 224, 224)})
    plain = netdef.compile_net(net, weights, outputs=["fc1000", "prob"]).eval()
    fast = netdef.compile_net(net, weights, outputs=["fc1000", "prob"], fast=True).eval()
    hand = copy_caffe_blobs(ResNet50().eval(), module_blobs(net, plain))
    del weights
    hand_nhwc = copy.deepcopy(hand).to(memory_format=torch.channels_last)
    seen = logits_of(hand)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224))
                         .astype(np.float32))

    with torch.no_grad():
        want = plain(x)
        prob = hand(x)
        check_close("hand-written fc1000", seen["fc1000"], want["fc1000"])
        check_close("hand-written prob", prob, want["prob"])
        got = fast(x)
        check_close("fast fc1000", got["fc1000"], want["fc1000"])
        check_close("fast prob", got["prob"], want["prob"])
        check_close("hand-written channels_last prob", hand_nhwc(x), want["prob"])
        times = interleaved({"plain": lambda: plain(x), "fast": lambda: fast(x), "hand": lambda: hand(x),
                             "hand_nhwc": lambda: hand_nhwc(x)}, args.rounds)
    t = {k: median(v) * 1e3 for k, v in times.items()}
    note = "batch %d, %d threads, median of %d" % (args.batch, torch.get_num_threads(), args.rounds)
    emit("eager forward, ResNet-50", round(t["plain"], 1), "ms", "hand-written", round(t["hand"], 1),
         round(t["hand"] / t["plain"], 3), 0.98, note)
    emit("eager forward, ResNet-50, fast path", round(t["fast"], 1), "ms", "hand-written",
         round(t["hand"], 1), round(t["hand"] / t["fast"], 3), 1.25, note)
    emit("eager forward, ResNet-50, fast path", round(t["fast"], 1), "ms", "hand-written, channels_last",
         round(t["hand_nhwc"], 1), round(t["hand_nhwc"] / t["fast"], 3), None, note)


if __name__ == "__main__":
    main()

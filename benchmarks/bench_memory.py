"""Peak memory of one ResNet-50 inference (batch --batch, 224x224, no_grad, eval):
compiled (plain and fast path) against the hand-written model; and for ResNet-50 and
VGG-16, the measured peak of the plain module against netdef's own estimate
(compiler.accounting.inference_peak_bytes, what `netdef summary` prints), which must be
within 20% of it. That peak is measured after one warm-up forward ("warm"): the first call
sets up oneDNN's kernels and thread pools once (~27 MB), which no estimate of activations
should count.

tracemalloc does not see torch's allocations, so each model runs in a fresh process that
measures its resident set: after building the model and the input, the kernel's
high-water mark is reset (/proc/self/clear_refs, "5"), one forward runs, and the figure is
VmHWM - VmRSS before the forward: the memory the inference itself took (activations,
workspaces), with the weights and libraries already resident and not counted. The
process's whole peak is reported beside it.

The children run with MALLOC_MMAP_THRESHOLD_=131072: every block of 128 KiB or more
(every activation) is then mapped on allocation and unmapped on free, so resident memory
follows the live tensors. With glibc's default, memory freed while building the model can
stay in the heap and be reused by the forward unseen, which would under-count.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

from common import RESNET50, SCRATCH, VGG16, emit, median, recipe_caffemodel


def status_kb():
    text = open("/proc/self/status").read()
    return {k: int(v) for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}


def child(kind, batch, weights, net=RESNET50):
    import torch
    import netdef
    if kind == "hand":
        from handwritten_resnet50 import ResNet50
        model = ResNet50().eval()
        model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        model = netdef.load(net, weights=None if weights == "-" else weights,
                            input_shapes={"data": (batch, 3, 224, 224)}, fast=kind == "fast").eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        if kind == "warm":
            model(x)    # what the first call sets up once is not the forward's activations
        before = status_kb()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        model(x)
        after = status_kb()
    print(json.dumps({"forward_kb": after["VmHWM"] - before, "process_peak_kb": after["VmHWM"]}))


def hand_state_dict(path):
    """The hand-written model's state dict with the compiled model's weights, saved once."""
    import torch
    import netdef
    from compiler.backends.torch_weights import module_blobs
    from handwritten_resnet50 import ResNet50, copy_caffe_blobs
    if not path.exists():
        compiled = netdef.load(RESNET50, weights=recipe_caffemodel("resnet50"))
        hand = copy_caffe_blobs(ResNet50(), module_blobs(netdef.record(compiled).net, compiled))
        torch.save(hand.state_dict(), path)
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WEIGHTS", "NET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.batch, args.child[1], args.child[2])

    caffemodel = recipe_caffemodel("resnet50")
    weights = {"plain": caffemodel, "fast": caffemodel, "hand": hand_state_dict(SCRATCH / "resnet50-hand.pt")}
    runs = {k: [] for k in weights}
    for _ in range(args.rounds):
        for kind, path in weights.items():
            runs[kind].append(run_child(kind, path, RESNET50, args.batch))
    mb = {k: median([r["forward_kb"] for r in v]) / 1024 for k, v in runs.items()}
    peak = {k: median([r["process_peak_kb"] for r in v]) / 1024 for k, v in runs.items()}
    for kind, label in (("plain", "ResNet-50"), ("fast", "ResNet-50, fast path")):
        emit("inference memory, " + label, round(mb[kind]), "MB", "hand-written", round(mb["hand"]),
             round(mb["hand"] / mb[kind], 3), None,
             "batch %d; process peak %d MB vs %d MB" % (args.batch, peak[kind], peak["hand"]))


    import netdef
    from compiler.accounting import human_bytes, inference_peak_bytes
    for label, path in (("ResNet-50", RESNET50), ("VGG-16", VGG16)):
        measured = median([run_child("warm", "-", path, args.batch)["forward_kb"]
                           for _ in range(args.rounds)]) * 1024
        estimate = inference_peak_bytes(netdef.parse(path, input_shapes={"data": (args.batch, 3, 224, 224)}))
        emit("inference memory estimate, " + label, round(estimate / 2**20), "MB", "measured peak",
             round(measured / 2**20), round(min(estimate, measured) / max(estimate, measured), 3), 0.8,
             "batch %d; %s estimated" % (args.batch, human_bytes(estimate)))


def run_child(kind, weights, net, batch):
    out = subprocess.run([sys.executable, __file__, "--batch", str(batch), "--child", kind, str(weights), str(net)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()

"""netdef's Solver on ResNet-50's parameters (batch --batch training net of bench_training):
its update against torch.optim.SGD(foreach=True), and its snapshots against raw file I/O.

- update: Caffe's SGD (history = momentum * history + lr * (gradient + decay * weight),
  weight -= history) as the Solver applies it (`apply_update`), against
  torch.optim.SGD(momentum=0.9, weight_decay=5e-4, foreach=True).step() on a copy of the
  same parameters with the same gradients: the same amount of work (a decay add, a
  momentum update, a weight update per tensor). Ratio: torch time / netdef time, target 1.0.
- snapshot write: `Solver.snapshot()` (PREFIX_iter_N.caffemodel, .solverstate and the side
  file, each through a temporary file, fsync and rename) against writing the same bytes to
  the same folder with one write and one fsync per file; resume read: `Solver.restore()`
  against reading those files' bytes. Speeds in MB/s of the snapshot's bytes; ratio
  netdef / raw, target 0.5. Files are in the page cache for both.
"""
import argparse
import os

import torch

from common import SCRATCH, emit, interleaved, median

from bench_training import LR, MOMENTUM, WEIGHT_DECAY, data, resnet50_train_prototxt, sgd_solver

def make_solver(batch):
    folder = SCRATCH / "solver-bench"
    x, label = data(batch, (3, 224, 224), 1000, 0)
    return sgd_solver(resnet50_train_prototxt(batch), None, None, x, label, folder), folder


def bench_update(solver, rounds):
    gen = torch.Generator().manual_seed(0)
    params = [e.tensor for e in solver.params]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    copies = [p.detach().clone().requires_grad_() for p in params]
    for c, p in zip(copies, params):
        c.grad = p.grad.clone()
    opt = torch.optim.SGD(copies, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, foreach=True)
    rate = solver.rate()
    times = interleaved({"netdef": lambda: solver.apply_update(rate), "torch": opt.step}, rounds, warmup=2)
    t = {k: median(v) * 1e3 for k, v in times.items()}
    count = sum(p.numel() for p in params)
    emit("solver update (SGD), ResNet-50 parameters", round(t["netdef"], 2), "ms",
         "torch.optim.SGD(foreach=True)", round(t["torch"], 2), round(t["torch"] / t["netdef"], 3), 1.0,
         "%d tensors, %.1fM values, median of %d interleaved" % (len(params), count / 1e6, rounds))


def snapshot_files(state_path):
    """The files one snapshot consists of: the .solverstate, the .caffemodel it names, the side file."""
    base = str(state_path)[:-len(".solverstate")]
    return [p for p in (base + ".caffemodel", state_path, str(state_path) + ".netdef.npz") if os.path.exists(p)]


def bench_snapshot(solver, folder, rounds):
    state = solver.snapshot()
    files = snapshot_files(state)
    contents = [open(f, "rb").read() for f in files]
    size_mb = sum(len(c) for c in contents) / 1e6
    raw = [str(folder / ("raw-%d.bin" % i)) for i in range(len(files))]

    def raw_write():
        for path, content in zip(raw, contents):
            with open(path, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())

    def raw_read():
        for path in files:
            with open(path, "rb") as f:
                f.read()

    writes = interleaved({"netdef": solver.snapshot, "raw": raw_write}, rounds)
    reads = interleaved({"netdef": lambda: solver.restore(state), "raw": raw_read}, rounds)
    for what, times, target in (("write", writes, 0.5), ("resume read", reads, 0.5)):
        speed = {k: size_mb / median(v) for k, v in times.items()}
        emit("snapshot %s, ResNet-50 SGD" % what, round(speed["netdef"]), "MB/s",
             "raw file I/O of the same bytes", round(speed["raw"]), round(speed["netdef"] / speed["raw"], 3),
             target, "%.0f MB in %d files, median of %d interleaved" % (size_mb, len(files), rounds))
    for path in raw:
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    solver, folder = make_solver(args.batch)
    bench_update(solver, args.rounds)
    bench_snapshot(solver, folder, max(3, args.rounds // 4))


if __name__ == "__main__":
    main()

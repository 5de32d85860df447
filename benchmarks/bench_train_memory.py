"""Peak memory of one ResNet-50 training iteration (batch --batch, 224x224): netdef against
the hand-written model with torch.optim.SGD, each in a fresh process.

As in bench_memory.py, the process measures its resident set with the kernel's high-water
mark. Each child builds its model and optimizer and runs one warm-up iteration (so that
the gradients and the momentum history exist, as in any later iteration), clears the
gradients, resets the high-water mark (/proc/self/clear_refs, "5") and runs one iteration.
Figures:
- step: VmHWM - VmRSS before the iteration: what the iteration itself takes (activations
  kept for backward, gradients, workspaces), weights and history already resident;
- model: VmHWM - VmRSS before the model was built: weights, history and the iteration,
  libraries excluded: what a training step of the net needs in all.
Children run with MALLOC_MMAP_THRESHOLD_=131072 so that resident memory follows the live
tensors (bench_memory.py says why).

Contenders: netdef's Solver (SGD, Caffe's arithmetic), netdef's module with
torch.optim.SGD, the hand-written model with torch.optim.SGD (momentum 0.9, decay 5e-4).
Ratio: hand-written / netdef (higher is better); target: netdef at most 1.1x the
hand-written model's step, a ratio of at least 0.91.
"""
import argparse
import json
import os
import re
import subprocess
import sys

from common import SCRATCH, emit, median


def status_kb():
    text = open("/proc/self/status").read()
    return {k: int(v) for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}


def child(kind, batch):
    import torch
    import torch.nn.functional as F
    from bench_training import LR, MOMENTUM, WEIGHT_DECAY, data, resnet50_train_prototxt, sgd_solver
    import netdef
    from handwritten_resnet50 import ResNet50
    base = status_kb()["VmRSS"]
    x, label = data(batch, (3, 224, 224), 1000, 0)
    net_file = resnet50_train_prototxt(batch)
    if kind == "solver":
        solver = sgd_solver(net_file, None, None, x, label, SCRATCH / "memory-bench")
        params = [e.tensor for e in solver.params]

        def step():
            solver.step(1)
    else:
        if kind == "hand":
            model = ResNet50().train()
            params = list(model.parameters())
            target = label.long()

            def loss():
                return F.cross_entropy(model.logits(x), target)
        else:
            gm = netdef.load(net_file, phase="TRAIN")
            params = [p for p in gm.parameters() if p.requires_grad]

            def loss():
                return gm(x, label)["loss"]
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

        def step():
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()
    step()
    for p in params:
        p.grad = None
    before = status_kb()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step()
    after = status_kb()
    print(json.dumps({"step_kb": after["VmHWM"] - before, "model_kb": after["VmHWM"] - base}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", metavar="KIND", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batch)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    kinds = ["solver", "module", "hand"]
    runs = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--child", kind],
                                 check=True, capture_output=True, text=True,
                                 env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")).stdout
            runs[kind].append(json.loads(out.strip().splitlines()[-1]))
    mb = {k: {f: median([r[f] for r in v]) / 1024 for f in ("step_kb", "model_kb")} for k, v in runs.items()}
    # netdef's two figures for a training step (weights, gradients, SGD's one history set,
    # what autograd keeps, the batch) against the Solver's measured step with weights and
    # history: the meta-device measurement (netdef.training.memory, `netdef time`) and the
    # count from the shapes that `summary` prints and the memory budget checks
    # (compiler.accounting.training_step_bytes).
    import netdef
    from bench_training import resnet50_train_prototxt
    from compiler.accounting import training_step_bytes
    from netdef.training.memory import training_step_memory
    net = netdef.parse(resnet50_train_prototxt(args.batch), "TRAIN")
    measured = mb["solver"]["model_kb"]
    figures = (("training step memory estimate (meta device), ResNet-50",
                training_step_memory(netdef.compile_net(net), {"data": (args.batch, 3, 224, 224),
                                                               "label": (args.batch,)}).total),
               ("training step memory count (summary, budget), ResNet-50", training_step_bytes(net).total))
    for name, estimate in figures:
        estimate /= 2 ** 20
        emit(name, round(estimate), "MB", "measured Solver step with weights and history", round(measured),
             round(measured / estimate, 3), None, "target: within 20%% (ratio 0.83 to 1.25); batch %d" % args.batch)
    for kind, label in (("solver", "Solver"), ("module", "module + torch.optim.SGD")):
        emit("training memory, ResNet-50, " + label, round(mb[kind]["step_kb"]), "MB", "hand-written",
             round(mb["hand"]["step_kb"]), round(mb["hand"]["step_kb"] / mb[kind]["step_kb"], 3), 0.91,
             "batch %d, one iteration; with weights and history %d MB vs %d MB"
             % (args.batch, mb[kind]["model_kb"], mb["hand"]["model_kb"]))


if __name__ == "__main__":
    main()

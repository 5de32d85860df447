"""Scale: checking and building stay linear in the number of layers.

A generated chain net (Input, then Convolution 1x1 and in-place ReLU pairs on a 1x4x2x2
blob) of N layers:
- check: `netdef check`'s work (read the prototxt, upgrade, phase, wire, shapes, checks:
  compiler.pipeline.build, then the totals it prints: summary_totals) at --check-sizes
  layers, each in a fresh process: ms of CPU time per layer (the machine is shared, and
  the CPU time is what a layer costs), and bytes per layer of peak resident memory above
  the process's after its imports (the protobuf messages live outside Python's allocator,
  so tracemalloc would miss them);
- the issue's file: --relu-layers (1.3 million) in-place ReLUs on one blob, written as
  tightly as text allows (62 MB, under the 64 MiB a prototxt may have), checked the same way;
- build: torch_fx.build_module of the checked net at --build-sizes layers, in us of CPU time
  per layer.
Each figure's ratio is the smallest size's cost per layer over this size's: 1.0 is linear,
and the target (0.7) allows for caches, not for a quadratic term.
"""
import argparse
import gc
import json
import resource
import subprocess
import sys
import time

from common import SCRATCH, emit

from compiler import pipeline

LAYER = ('layer {{ name: "c{i}" type: "Convolution" bottom: "{b}" top: "c{i}" '
         'convolution_param {{ num_output: 4 kernel_size: 1 }} }}\n'
         'layer {{ name: "r{i}" type: "ReLU" bottom: "c{i}" top: "c{i}" }}\n')


def chain(n):
    """Path of a prototxt of n layers (written once under SCRATCH)."""
    parts = ['name: "chain"\nlayer { name: "data" type: "Input" top: "data" '
             'input_param { shape { dim: 1 dim: 4 dim: 2 dim: 2 } } }\n']
    parts += [LAYER.format(i=i, b="data" if i == 0 else "c%d" % (i - 1)) for i in range((n - 1) // 2)]
    return _written("chain-%d.prototxt" % n, parts)


def relu_chain(n):
    """Path of the issue's kind of file: an Input and n - 1 in-place ReLUs, named in base
    36 and written without optional spaces, about 48 bytes a layer."""
    def base36(i):
        digits = ""
        while True:
            i, r = divmod(i, 36)
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
            if i == 0:
                return digits
    parts = ['name:"relu-chain"\nlayer{name:"x"type:"Input"top:"x"input_param{shape{dim:1 dim:4 dim:2 dim:2}}}\n']
    parts += ['layer{name:"r%s"type:"ReLU"bottom:"x"top:"x"}\n' % base36(i) for i in range(n - 1)]
    return _written("relu-chain-%d.prototxt" % n, parts)


def _written(name, parts):
    path = SCRATCH / name
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        tmp.write_text("".join(parts))
        tmp.replace(path)
    return path


def check_once(path):
    """{"layers", "ms", "bytes"} per layer of what `netdef check` does with the file, in
    this (fresh) process."""
    from compiler.backends.summary import summary_totals
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    net = pipeline.build(path)
    summary_totals(net)
    seconds = time.process_time() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    layers = len(net.layers)
    return {"layers": layers, "ms": seconds * 1e3 / layers, "bytes": grown / layers}


def _check_in_a_fresh_process(path):
    done = subprocess.run([sys.executable, __file__, "--check-once", str(path)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-sizes", default="1000,10000,100000")
    parser.add_argument("--relu-layers", type=int, default=1300000, help="0: leave the issue's file out")
    parser.add_argument("--build-sizes", default="1000,10000,100000")
    parser.add_argument("--check-once", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_once:
        print(json.dumps(check_once(args.check_once)))
        return
    first = None
    for n in map(int, args.check_sizes.split(",")):
        got = _check_in_a_fresh_process(chain(n))
        first = first or got["ms"]
        emit("check a %d-layer chain, CPU time per layer" % got["layers"], round(got["ms"], 4), "ms",
             "per layer at the smallest size", round(first, 4), round(first / got["ms"], 2), 0.7)
        emit("check a %d-layer chain, peak memory per layer" % got["layers"], round(got["bytes"]), "bytes")
    if args.relu_layers:
        path = relu_chain(args.relu_layers)
        got = _check_in_a_fresh_process(path)
        emit("check %d in-place ReLUs (%d MiB of prototxt), CPU time per layer"
             % (got["layers"], path.stat().st_size >> 20), round(got["ms"], 4), "ms")
        emit("same, peak memory per layer (%d MiB in all)" % (got["bytes"] * got["layers"] / (1 << 20)),
             round(got["bytes"]), "bytes")
    first = None
    from compiler.backends import torch_fx
    for n in map(int, args.build_sizes.split(",")):
        net = pipeline.build(chain(n))
        layers = len(net.layers)
        start = time.process_time()
        torch_fx.build_module(net)
        us = (time.process_time() - start) * 1e6 / layers
        first = first or us
        emit("build_module, %d-layer chain, CPU time per layer" % layers, round(us, 1), "us",
             "per layer at the smallest size", round(first, 1), round(first / us, 2), 0.7)
        del net
        gc.collect()


if __name__ == "__main__":
    main()

"""Inductor settings beyond freezing, A/B against netdef's compile=True, and where its time goes.

compile=True (netdef/inference/compiled.py) runs the fast path under torch.compile with
inductor's freezing, channels_last. This script asks whether any further inductor setting
that keeps float32 exact makes that faster: each variant is the same fast-path module
compiled static at the benchmark's batch, called channels_last under
`torch._inductor.config.patch(freezing=True, **variant)` (the patch around every call, as
compiled.py does), checked against the eager module with the golden cases' tolerance, and
timed interleaved with compile=True itself in one process (medians, rotating order), so that
machine load hits every contender alike; the process's CPU time per call is shown beside
the wall time. "recipe" is the variant with no setting added: the same code as compile=True,
so its ratio shows the noise.

--profile instead runs torch.profiler over compile=True's static program, with inductor's
kernel profile on (its generated C++ kernels then show up by name), and splits the time into
oneDNN convolutions, other ATen/oneDNN calls, inductor's generated kernels and what is left
(Python wrapper, dynamo guards, allocation): the last three bound what a compile setting could
still gain.
"""
import argparse
import collections
import os
import tempfile
import time

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="netdef-inductor-"))

import numpy as np
import torch
import torch._inductor.config

from bench_compile import NETS, check_close
from common import interleaved, median, recipe_weights, timed

import netdef

VARIANTS = {
    "recipe": {},
    "max_autotune": {"max_autotune": True},
    "max_autotune_cpp_gemm": {"max_autotune": True, "max_autotune_gemm_backends": "CPP"},
    "max_autotune_conv_1x1_as_mm": {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN",
                                    "conv_1x1_as_mm": True},
    "cpp_wrapper": {"cpp_wrapper": True},
    "no_weight_prepack": {"cpp.weight_prepack": False},
    "no_epilogue_fusion": {"epilogue_fusion": False},
    "simdlen_256": {"cpp.simdlen": 256},
    "aggressive_fusion": {"aggressive_fusion": True},
}


def variant(fast, settings):
    """The fast-path module compiled static, called channels_last under freezing + settings."""
    program = torch.compile(fast, dynamic=False)

    def call(x):
        with torch.no_grad(), torch._inductor.config.patch(freezing=True, **settings):
            return program(x.contiguous(memory_format=torch.channels_last))
    return call


def explore(title, batch, rounds, names):
    case, prototxt, logits, _, _ = NETS[title]
    outputs = [logits, "prob"]
    weights = recipe_weights(case)
    net = netdef.parse(prototxt, input_shapes={"data": (batch, 3, 224, 224)})
    plain = netdef.compile_net(net, weights, outputs=outputs).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        want = plain(x)
    del plain
    compiled = netdef.compile_net(net, weights, outputs=outputs, compile=True)
    fns = {"compile=True": lambda: compiled(x)}
    warmup = {"compile=True": compiled.warmup_seconds}
    for name in names:
        call = variant(netdef.compile_net(net, weights, outputs=outputs, fast=True), VARIANTS[name])
        try:
            warmup[name] = timed(lambda: call(x))
        except Exception as e:          # a setting this torch or CPU cannot compile: say so
            print("%s %s: failed to compile: %s" % (title, name, str(e).splitlines()[0][:200]))
            continue
        got = call(x)
        for blob in outputs:
            check_close("%s %s" % (name, blob), got[blob], want[blob])
        fns[name] = lambda call=call: call(x)
    cpu = {name: [] for name in fns}
    times = interleaved({name: with_cpu_time(fn, cpu[name]) for name, fn in fns.items()}, rounds)
    base, base_cpu = median(times["compile=True"]), median(cpu["compile=True"])
    print("%s, batch %d, %d threads, median of %d interleaved, load average %s" % (
        title, batch, torch.get_num_threads(), rounds, " ".join("%.1f" % a for a in os.getloadavg())))
    print("| variant | ms | compile=True / variant | CPU ms | compile=True / variant, CPU | warm-up s |")
    print("|---|---|---|---|---|---|")
    for name, t in times.items():
        print("| %s | %.1f | %.3f | %.1f | %.3f | %.1f |" % (
            name, median(t) * 1e3, base / median(t), median(cpu[name]) * 1e3,
            base_cpu / median(cpu[name]), warmup[name]))


def with_cpu_time(fn, seconds):
    """fn, appending the process's CPU seconds (all threads) of each call to `seconds`: on a
    shared machine wall time counts the time other processes had the cores, CPU time less so."""
    def call():
        start = time.process_time()
        fn()
        seconds.append(time.process_time() - start)
    return call


def category(name):
    if "convolution" in name:
        return "oneDNN convolutions"
    if name.startswith(("aten::", "mkldnn::", "mkl::", "onednn::", "quantized::")):
        return "other ATen/oneDNN calls"
    if "cpp_fused" in name or name.startswith("graph_"):
        return "inductor's generated kernels"
    return None


def profile(title, batch, rounds):
    case, prototxt, logits, _, _ = NETS[title]
    net = netdef.parse(prototxt, input_shapes={"data": (batch, 3, 224, 224)})
    x = torch.zeros(batch, 3, 224, 224)
    with torch._inductor.config.patch({"cpp.enable_kernel_profile": True}):
        compiled = netdef.compile_net(net, recipe_weights(case), outputs=[logits, "prob"], compile=True)
        compiled(x)
        with torch.profiler.profile() as prof:
            wall = sum(timed(lambda: compiled(x)) for _ in range(rounds)) / rounds
    split = collections.Counter()
    kernels = collections.Counter()
    for event in prof.key_averages():
        kind = category(event.key)
        if kind:    # self time: an ATen call inside another (a conv's reorder) counts once
            split[kind] += event.self_cpu_time_total / rounds / 1e3
            kernels[event.key] += event.self_cpu_time_total / rounds / 1e3
    print("%s, batch %d, %d threads, %d profiled calls of compile=True's static program: "
          "%.1f ms per call (under the profiler)" % (title, batch, torch.get_num_threads(), rounds, wall * 1e3))
    for kind, ms in split.most_common():
        print("  %-30s %7.1f ms  %5.1f%%" % (kind, ms, 100 * ms / (wall * 1e3)))
    rest = wall * 1e3 - sum(split.values())
    print("  %-30s %7.1f ms  %5.1f%%" % ("the rest (wrapper, guards)", rest, 100 * rest / (wall * 1e3)))
    print("  largest:")
    for name, ms in kernels.most_common(8):
        print("    %-60s %7.2f ms" % (name[:60], ms))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--nets", default="ResNet-50", help="comma-separated: " + ", ".join(NETS))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--profile", action="store_true", help="profile compile=True instead")
    args = parser.parse_args()
    for title in args.nets.split(","):
        if args.profile:
            profile(title, args.batch, args.rounds)
        else:
            explore(title, args.batch, args.rounds, args.variants.split(","))


if __name__ == "__main__":
    main()

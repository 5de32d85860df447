"""Run every benchmark, each in a fresh process, and print one table (`make bench`).

    python benchmarks/run_all.py [--quick] [--only frontend,forward,caffemodel,memory,compile,data,scale]

Each row puts a figure next to what it is compared with; `ratio` is higher-is-better
(compared time / our time, our speed / compared speed, compared memory / our memory) and
`target` is the ratio the project aims for. Timings are medians of interleaved runs, but
they still depend on the machine being otherwise idle: the load average is printed before
and after.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# glibc malloc settings that keep freed activations in the heap instead of handing them
# back to the kernel: every forward then reuses memory instead of faulting in fresh pages.
# Eager forward speed depends on this more than on anything netdef does (README,
# Performance), so the forward benchmark runs with the default allocator and with these.
NO_TRIM_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}

BENCHMARKS = {
    "frontend": ("bench_frontend.py", {"--rounds": (15, 5)}, None),
    "forward": ("bench_forward.py", {"--rounds": (15, 5)}, None),
    "forward-no-trim": ("bench_forward.py", {"--rounds": (15, 5)}, NO_TRIM_MALLOC),
    "caffemodel": ("bench_caffemodel.py", {"--rounds": (5, 2)}, None),
    "memory": ("bench_memory.py", {"--rounds": (3, 1)}, None),
    "compile": ("bench_compile.py", {"--rounds": (15, 5)}, None),
    "data": ("bench_data.py", {"--batches": (40, 4), "--steps": (60, 10)}, None),
    "training": ("bench_training.py", {"--rounds": (10, 2)}, None),
    "train-memory": ("bench_train_memory.py", {"--rounds": (3, 1)}, None),
    "solver": ("bench_solver.py", {"--rounds": (20, 4)}, None),
    "scale": ("bench_scale.py", {"--check-sizes": ("1000,10000,100000", "2000,20000"),
                                 "--relu-layers": (1300000, 0),
                                 "--build-sizes": ("1000,10000,100000", "1000,10000")}, None),
}


def run(name, quick):
    script, options, env = BENCHMARKS[name]
    argv = [sys.executable, str(HERE / script)]
    for flag, (full, short) in options.items():
        argv += [flag, str(short if quick else full)]
    done = subprocess.run(argv, cwd=HERE, capture_output=True, text=True,
                          env=dict(os.environ, **env) if env else None)
    if done.returncode:
        sys.stderr.write(done.stderr)
        return [{"name": name, "value": "FAILED", "unit": "", "note": done.stderr.strip().splitlines()[-1]
                 if done.stderr.strip() else "exit %d" % done.returncode}]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if env:
        for row in rows:
            row["note"] = (row.get("note") or "") + "; malloc: " + " ".join("%s=%s" % kv for kv in env.items())
            row["name"] += ", no-trim malloc"
    return rows


def fmt(v):
    return "" if v is None else str(v)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, not figures)")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    print("load average before: %.2f %.2f %.2f (%d CPUs)" % (os.getloadavg() + (os.cpu_count(),)))
    rows = [row for name in names for row in run(name, args.quick)]
    header = ["benchmark", "netdef", "compared with", "ratio", "target", "met", "notes"]
    table = [header]
    for r in rows:
        value = "%s %s" % (r["value"], r["unit"])
        compare = "%s: %s %s" % (r["compare_to"], r["compare_value"], r["unit"]) if r.get("compare_to") else ""
        met = "" if r.get("target") is None or r.get("ratio") is None else \
            ("yes" if r["ratio"] >= r["target"] else "NO")
        table.append([r["name"], value, compare, fmt(r.get("ratio")), fmt(r.get("target")), met,
                      fmt(r.get("note"))])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    return 1 if any(r["value"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

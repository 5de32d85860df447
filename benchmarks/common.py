"""What the benchmark scripts share: where the reference data is, the recipe weights, timing.

Each script prints its results as JSON lines (one per figure) so that run_all.py can run
it in a fresh process and gather a table. A figure is
{"name", "value", "unit", "compare_to", "compare_value", "ratio", "target"}: `ratio` is
always "higher is better" and `target` is the ratio the project aims for.
"""
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("NETDEF_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "caffe-corpus"
GOLDEN = SHARED / "caffe-golden"
# Big generated files (the VGG-16 caffemodel is 553 MB) go here, never into the checkout.
SCRATCH = Path(os.environ.get("NETDEF_BENCH_DIR", "/tmp/netdef-bench"))

RESNET50 = CORPUS / "resnet" / "ResNet-50-deploy.prototxt"
RESNET152 = CORPUS / "resnet" / "ResNet-152-deploy.prototxt"
VGG16 = CORPUS / "vgg" / "VGG_ILSVRC_16_layers_deploy.prototxt"


def shared_tool(name):
    spec = importlib.util.spec_from_file_location("shared_" + name, SHARED / "tools" / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case_params(case):
    return json.loads((GOLDEN / "nets" / case / "case.json").read_text())["params"]


def recipe_weights(case):
    """{layer: [arrays]}: the golden cases' deterministic weights (caffe_weights.py)."""
    return shared_tool("caffe_weights").recipe_arrays(case_params(case))


def recipe_caffemodel(case):
    """Path of the case's recipe .caffemodel under SCRATCH, written once."""
    path = SCRATCH / (case + ".caffemodel")
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(shared_tool("caffe_weights").caffemodel_bytes(case_params(case)))
        tmp.replace(path)
    return path


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns, rounds, warmup=1):
    """{name: [seconds per call]} with the calls interleaved round by round, rotating the
    order each round, so that a change in machine load hits every contender alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timed(fns[name]))
    return times


def median(values):
    return statistics.median(values)


def emit(name, value, unit, compare_to=None, compare_value=None, ratio=None, target=None, note=None):
    row = {"name": name, "value": value, "unit": unit, "compare_to": compare_to,
           "compare_value": compare_value, "ratio": ratio, "target": target, "note": note}
    print(json.dumps(row), flush=True)

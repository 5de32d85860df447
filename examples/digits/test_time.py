"""Test-time crops and ensembles on the digits, measured: what `netdef test --crops 10` and
`--ensemble` gain in accuracy and cost in time.

Caffe's LeNet (lenet_imagedata.prototxt) is trained by `netdef train` as in the acceptance
run, but on random 24x24 crops of the 28x28 digit images, mirrored half the time (the
ImageNet recipe the lecture's test-time crops go with), twice with two seeds, with
snapshots every 200 iterations. Then `netdef test` scores the 360 held-out images: the
centre crop (--crops 1) against the four corners, the centre and their mirrors
(--crops 10), one net against an ensemble of its three snapshots and of the two nets.
Times are the test command's wall time in this process (the net's building, the
images' decoding and the forward passes; not Python's start).

    python examples/digits/test_time.py [--work build/digits-test-time]

It prints a Markdown table (README, "Test-time crops and ensembles, measured").
"""
import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from netdef.cli import main as netdef_main

HERE = Path(__file__).resolve().parent
ITERATIONS, SNAPSHOT = 600, 200
TEST_PASSES = 3                  # 3 batches of 120: the 360 held-out images once


def crop_net(text):
    """lenet_imagedata.prototxt, reading 24x24 crops: random and mirrored in TRAIN, the
    centre in TEST."""
    train, test = text.split("include { phase: TEST }", 1)
    train = train.replace("transform_param { scale: 0.00390625 }",
                          "transform_param { scale: 0.00390625 crop_size: 24 mirror: true }")
    test = test.replace("transform_param { scale: 0.00390625 }",
                        "transform_param { scale: 0.00390625 crop_size: 24 }", 1)
    return train + "include { phase: TEST }" + test


def solver(text, seed):
    text = re.sub(r"random_seed: \d+", "random_seed: %d" % seed, text)
    text = re.sub(r"snapshot: \d+", "snapshot: %d" % SNAPSHOT, text)
    return re.sub(r'snapshot_prefix: "\w+"', 'snapshot_prefix: "seed%d"' % seed, text)


def netdef(argv):
    """Run a netdef command here: (its output, seconds)."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = netdef_main(argv)
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit("netdef %s failed:\n%s" % (" ".join(argv), out.getvalue()))
    return out.getvalue(), seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=str(HERE.parent.parent / "build" / "digits-test-time"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "make_digits.py", work / "make_digits.py")
    (work / "lenet.prototxt").write_text(crop_net((HERE / "lenet_imagedata.prototxt").read_text()))
    solver_text = (HERE / "solver_imagedata.prototxt").read_text().replace("lenet_imagedata.prototxt", "lenet.prototxt")
    subprocess.run([sys.executable, "make_digits.py"], cwd=work, check=True, capture_output=True)
    os.chdir(work)
    for seed in (1, 2):
        Path("solver%d.prototxt" % seed).write_text(solver(solver_text, seed))
        _, seconds = netdef(["train", "solver%d.prototxt" % seed])
        print("trained seed %d in %.0f s" % (seed, seconds), file=sys.stderr)
    final = "seed1_iter_%d.caffemodel" % ITERATIONS
    snapshots = ["seed1_iter_%d.caffemodel" % i for i in range(SNAPSHOT, ITERATIONS, SNAPSHOT)]
    runs = [("one net", []), ("3 snapshots of it (iterations 200, 400, 600)", ["--ensemble"] + snapshots),
            ("2 nets (seeds 1 and 2)", ["--ensemble", "seed2_iter_%d.caffemodel" % ITERATIONS])]
    print("| members | crops | test accuracy | test time |")
    print("|---|---|---|---|")
    for name, ensemble in runs:
        for crops in (1, 10):
            out, seconds = netdef(["test", "lenet.prototxt", "--weights", final, "--iterations", str(TEST_PASSES),
                                   "--crops", str(crops)] + ensemble)
            accuracy = float(re.search(r"^accuracy = (\S+)", out, re.M).group(1))
            print("| %s | %d | %.2f%% | %.2f s |" % (name, crops, 100 * accuracy, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

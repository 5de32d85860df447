"""The digits acceptance run (`make acceptance`): scikit-learn's digits as image files and as
an LMDB (make_digits.py), then Caffe's LeNet recipe trained by `netdef train` twice, once
reading them through ImageData and once through Data/LMDB. Each run must reach at least
98% test accuracy (at most 7 of the 360 held-out images wrong; the seeds are fixed); the
wall time of each is printed beside the 2-minute target (a 2-core machine, otherwise idle).

    python examples/digits/acceptance.py [--work build/digits]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_IMAGES = 360
MIN_ACCURACY = 0.98
TARGET_SECONDS = 120


def train(work, variant):
    """Run netdef train on solver_<variant>.prototxt in `work`: (final accuracy, seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "netdef", "train", "solver_%s.prototxt" % variant,
                           "--log", "train_%s.log" % variant], cwd=work, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit("netdef train failed for %s (exit %d)" % (variant, done.returncode))
    found = re.findall(r"Test net output #\d+: accuracy = ([0-9.]+)", done.stdout + done.stderr)
    if not found:
        raise SystemExit("no test accuracy in the %s training log" % variant)
    return float(found[-1]), seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=str(HERE.parent.parent / "build" / "digits"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(HERE):
        if name.endswith(".prototxt") or name == "make_digits.py":
            shutil.copy(HERE / name, work / name)
    subprocess.run([sys.executable, "make_digits.py"], cwd=work, check=True)
    failed = False
    for variant in ("imagedata", "lmdb"):
        accuracy, seconds = train(work, variant)
        wrong = round((1 - accuracy) * TEST_IMAGES)
        ok = accuracy >= MIN_ACCURACY - 1e-6
        failed |= not ok
        print("%-9s test accuracy %.4f (%d of %d wrong), %.0f s (target %d s on 2 idle cores)%s"
              % (variant, accuracy, wrong, TEST_IMAGES, seconds, TARGET_SECONDS, "" if ok else "  FAILED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

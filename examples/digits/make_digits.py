"""The digits acceptance data: scikit-learn's handwritten digits (1,797 8x8 images, 0..16)
scaled to 28x28 gray PNGs, 20% held out by a fixed split, written as image files with
`path label` lists (for ImageData) and as LMDBs by `netdef data convert-imageset` (for
Data). Usage, from the folder to write into:

    python make_digits.py            # -> train/, test/, train.txt, test.txt, train_lmdb/, test_lmdb/

scikit-learn is an extra (pip install 'netdef[examples]'); opencv-python-headless and lmdb
come with the data extra.
"""
import os
import subprocess
import sys

import numpy as np

SPLIT_SEED = 0          # the fixed split: a permutation of the 1,797 images
TEST_COUNT = 360        # 20% held out


def main():
    import cv2
    from sklearn.datasets import load_digits
    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.images))
    parts = {"test": order[:TEST_COUNT], "train": order[TEST_COUNT:]}
    for part, indices in parts.items():
        os.makedirs(part, exist_ok=True)
        lines = []
        for i in indices:
            img = np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            cv2.imwrite(os.path.join(part, "%04d.png" % i), cv2.resize(img, (28, 28)))
            lines.append("%s/%04d.png %d" % (part, i, digits.target[i]))
        with open(part + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")
        if not os.path.exists(part + "_lmdb"):
            subprocess.run([sys.executable, "-m", "netdef", "data", "convert-imageset", "--gray"]
                           + (["--shuffle"] if part == "train" else []) + ["./", part + ".txt", part + "_lmdb"],
                           check=True)
        print("%s: %d images" % (part, len(indices)))


if __name__ == "__main__":
    main()

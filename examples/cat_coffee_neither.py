"""The lecture's small 3-class classifier ("Tigger / Misty / neither" in spirit), from real
photos that ship inside scikit-image's wheel: cat (chelsea.png), coffee (coffee.png) or
neither (astronaut.png, rocket.jpg, motorcycle_left.png). Nothing is fetched: the files
are read from the installed package's data folder, and a missing one is an error.

1. The "pretrained" net: no ImageNet weights can be had offline, so the stand-in is a
   small net trained to tell apart crops of twelve *other* photos of the wheel (brick,
   camera, cell, coins, grass, gravel, hubble_deep_field, ihc, moon, page, retina, text):
   generic edge, texture and colour features, never shown a cat, a cup or the "neither"
   photos.
2. The small data set: random square crops of each class's photos (a third to four
   fifths of the short side, resized to 32x32, mirrored half the time, brightness
   jittered), 20 per class to train and 40 per class to test, drawn apart. With one photo
   per class the test crops are new crops of the same photos, not new photos: this shows
   the workflow, not how a cat detector generalises.
3. `netdef finetune` (head only, and everything) against the same net from scratch, the
   same iterations and learning rate each; test accuracy of each.
4. A PNG grid of test crops labelled with the fine-tuned net's predictions (matplotlib).

    python examples/cat_coffee_neither.py [--grid docs/cat_coffee_neither.png]

Needs the examples extra (pip install 'netdef[examples]': scikit-image, matplotlib).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transfer_digits import accuracy, train, write  # noqa: E402  (the examples' SGD and scoring)

CLASSES = {"cat": ["chelsea.png"], "coffee": ["coffee.png"],
           "neither": ["astronaut.png", "rocket.jpg", "motorcycle_left.png"]}
PRETRAIN_PHOTOS = ["brick.png", "camera.png", "cell.png", "coins.png", "grass.png", "gravel.png",
                   "hubble_deep_field.jpg", "ihc.png", "moon.png", "page.png", "retina.jpg", "text.png"]
SIZE, TRAIN_PER_CLASS, TEST_PER_CLASS, PRETRAIN_PER_PHOTO = 32, 20, 40, 60
PRETRAIN_ITERS, PRETRAIN_BATCH, FINETUNE_ITERS, LR = 300, 32, 100, 0.01

NET = '''name: "photos"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: %(batch)d dim: 3 dim: 32 dim: 32 } shape { dim: %(batch)d } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3" top: "pool3" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool3" top: "ip1"
  inner_product_param { num_output: 64 weight_filler { type: "xavier" } } }
layer { name: "relu4" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: %(classes)d weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''


def photo(name):
    """A photo of scikit-image's wheel as HxWx3 RGB uint8, read from the installed package
    (never through skimage.data's downloader)."""
    import cv2
    import skimage
    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    if not os.path.isfile(path):
        raise SystemExit("%s is not in the installed scikit-image wheel (%s)" % (name, skimage.__version__))
    image = cv2.imread(path, cv2.IMREAD_COLOR)      # gray photos become 3 equal channels
    return image[:, :, ::-1]


def crops(image, count, rng):
    """`count` augmented SIZExSIZE crops of an RGB photo, as float32 (count, 3, SIZE, SIZE)
    in [-0.5, 0.5], and the same crops as uint8 RGB for showing."""
    import cv2
    h, w = image.shape[:2]
    shown = []
    for _ in range(count):
        side = int(rng.uniform(1 / 3, 0.8) * min(h, w))
        y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
        crop = cv2.resize(np.ascontiguousarray(image[y:y + side, x:x + side]), (SIZE, SIZE),
                          interpolation=cv2.INTER_AREA)
        if rng.integers(2):
            crop = crop[:, ::-1]
        shown.append(np.clip(crop * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8))
    shown = np.stack(shown)
    return (shown.transpose(0, 3, 1, 2) / 255.0 - 0.5).astype(np.float32), shown


def data_set(groups, per_group, rng):
    """{label: [photo names]} -> (inputs, labels, shown crops): per_group crops per label,
    spread over its photos."""
    inputs, labels, shown = [], [], []
    for label, names in enumerate(groups):
        for k, name in enumerate(names):
            count = per_group // len(names) + (k < per_group % len(names))
            x, s = crops(photo(name), count, rng)
            inputs.append(x)
            shown.append(s)
            labels += [label] * count
    return np.concatenate(inputs), np.array(labels), np.concatenate(shown)


def predictions(module, net_file, inputs):
    import netdef
    import torch
    weights = net_file + ".caffemodel"
    netdef.export(module, weights)
    gm = netdef.load(net_file, weights=weights, outputs=["ip2"],
                     input_shapes={"data": inputs.shape, "label": (len(inputs),)})
    with torch.no_grad():
        return gm(torch.from_numpy(inputs), torch.zeros(len(inputs)))["ip2"].argmax(1).numpy()


def draw_grid(path, shown, labels, predicted, names, columns=8):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.45))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, guess in zip(axes.flat, shown, labels, predicted):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(names[guess], fontsize=9, color="green" if guess == truth else "red")
    fig.suptitle("test crops, labelled with the fine-tuned net's prediction (red: wrong)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(folder, grid, pretrain_iters=PRETRAIN_ITERS, finetune_iters=FINETUNE_ITERS, shown=24):
    """Pretrain, fine-tune, compare with scratch, draw: -> [(run, test accuracy, seconds)]."""
    import netdef
    from netdef.cli import main
    rng = np.random.default_rng(0)
    x, y, _ = data_set([[p] for p in PRETRAIN_PHOTOS], PRETRAIN_PER_PHOTO, rng)
    pretrain = write(folder, "pretrain.prototxt", NET, batch=PRETRAIN_BATCH, classes=len(PRETRAIN_PHOTOS))
    module, seconds = train(pretrain, x, y, pretrain_iters, PRETRAIN_BATCH, lr=LR)
    pretrained = os.path.join(folder, "pretrained.caffemodel")
    netdef.export(module, pretrained)
    rows = [("pretrained: which of 12 other photos (%d crops, %d iterations)" % (len(x), pretrain_iters),
             None, seconds)]

    groups = list(CLASSES.values())
    x_train, y_train, _ = data_set(groups, TRAIN_PER_CLASS, np.random.default_rng(1))
    x_test, y_test, shown_test = data_set(groups, TEST_PER_CLASS, np.random.default_rng(2))
    base = write(folder, "photos.prototxt", NET, batch=len(x_train), classes=len(CLASSES))
    fine_tuned = None
    for regime, name in (("all", "fine-tuned, head only (--freeze all)"),
                         ("none", "fine-tuned, everything (--freeze none)"), (None, "from scratch")):
        net = base
        if regime:
            net = os.path.join(folder, "ft_%s.prototxt" % regime)
            assert main(["finetune", base, "--classes", str(len(CLASSES)), "--freeze", regime, "-o", net]) == 0
        module, seconds = train(net, x_train, y_train, finetune_iters, len(x_train),
                                weights=pretrained if regime else None, lr=LR)
        rows.append(("%s (%d iterations)" % (name, finetune_iters), accuracy(module, net, x_test, y_test), seconds))
        if regime == "none":
            fine_tuned = (module, net)
    pick = np.random.default_rng(3).choice(len(x_test), shown, replace=False)
    guesses = predictions(*fine_tuned, x_test[pick])
    draw_grid(grid, shown_test[pick], y_test[pick], guesses, list(CLASSES))
    return rows


def main_example():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="cat_coffee_neither.png", help="the PNG grid to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = run(folder, args.grid)
    print("| run | test accuracy (%d crops) | train time |" % (TEST_PER_CLASS * len(CLASSES)))
    print("|---|---|---|")
    for name, acc, seconds in rows:
        print("| %s | %s | %.1f s |" % (name, "-" if acc is None else "%.1f%%" % (100 * acc), seconds))
    print("\ngrid: %s" % args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main_example())

"""Data loading: images/s of netdef's ImageData and Data (LMDB) layers against a
torchvision ImageFolder + transforms DataLoader doing the same work, and the share of a
LeNet training step spent waiting for data.

The work (Caffe's TRAIN transform of an ImageNet recipe): decode a 256x256 JPEG, take a
random 227x227 crop, mirror with probability 1/2, subtract a per-channel mean, as float32,
in batches of --batch. Both sides use --workers DataLoader worker processes, and the first
batch (worker start-up) is not timed. torchvision (the `bench` extra) decodes with Pillow
into RGB; netdef decodes with OpenCV into BGR, as Caffe. The data is generated once under
$NETDEF_BENCH_DIR: --images JPEGs in ImageFolder layout, their list file, and an encoded
LMDB of the same files written by `netdef data convert-imageset --encoded`.

The data-wait share: a LeNet (Caffe's MNIST net) training step on the CPU, plain SGD,
batch 64 of 28x28 gray PNGs read by ImageData with one worker process; the share is the
time the loop spent blocked on the next batch over the whole time.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from common import ROOT, SCRATCH, emit

MEAN = (104, 117, 123)


def make_images(folder, count, size, gray=False, quality=90):
    """count synthetic images (smooth colour fields plus noise, 4 classes): returns the
    list file's lines."""
    import cv2
    rng = np.random.default_rng(0)
    lines = []
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        label = i % 4
        os.makedirs(os.path.join(folder, "c%d" % label), exist_ok=True)
        a = rng.uniform(0, 255, (3, 3))
        img = np.stack([a[c, 0] * x + a[c, 1] * y + a[c, 2] * x * y for c in range(3)], axis=2)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        name = "c%d/%05d.%s" % (label, i, "png" if gray else "jpg")
        if gray:
            cv2.imwrite(os.path.join(folder, name), img[:, :, 0])
        else:
            cv2.imwrite(os.path.join(folder, name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        lines.append("%s %d" % (name, label))
    return lines


def prepare(count):
    base = SCRATCH / ("data-%d" % count)
    if (base / "done").exists():
        return base
    base.mkdir(parents=True, exist_ok=True)
    lines = make_images(str(base / "images"), count, 256)
    (base / "list.txt").write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "netdef", "data", "convert-imageset", "--encoded",
                    str(base / "images") + "/", str(base / "list.txt"), str(base / "lmdb")],
                   check=True, capture_output=True)
    digits = make_images(str(base / "small"), 1024, 28, gray=True)
    (base / "small.txt").write_text("\n".join(digits) + "\n")
    (base / "done").write_text("ok\n")
    return base


def netdef_rate(base, layer, batch, workers, batches):
    import netdef
    from netdef.data.feed import NetData
    net_file = base / ("bench_%s.prototxt" % layer)
    transform = "crop_size: 227 mirror: true %s" % " ".join("mean_value: %d" % m for m in MEAN)
    source = ('image_data_param { source: "%s" root_folder: "%s/" batch_size: %d shuffle: true }'
              % (base / "list.txt", base / "images", batch) if layer == "ImageData" else
              'data_param { source: "%s" backend: LMDB batch_size: %d }' % (base / "lmdb", batch))
    net_file.write_text('layer { name: "data" type: "%s" top: "data" top: "label" transform_param { %s } %s }\n'
                        % (layer, transform, source))
    feed = NetData(netdef.parse(str(net_file), "TRAIN"), workers=workers, prefetch=2)
    return _rate(feed.batches(), batch, batches)


def torchvision_rate(base, batch, workers, batches):
    import torch
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.RandomCrop(227), transforms.RandomHorizontalFlip(),
                             transforms.PILToTensor(),
                             transforms.Lambda(lambda t: t.float() - torch.tensor(MEAN[::-1]).view(3, 1, 1))])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(base / "images"), tf), batch_size=batch,
                                         shuffle=True, num_workers=workers, prefetch_factor=2,
                                         persistent_workers=True)
    def endless():
        while True:
            yield from loader
    return _rate(endless(), batch, batches)


def _rate(iterator, batch, batches):
    next(iterator)                       # worker start-up
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return round(batch * batches / (time.perf_counter() - start), 1)


LENET = '''name: "LeNet"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  image_data_param { source: "%s" root_folder: "%s/" batch_size: 64 is_color: false shuffle: true } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''


def lenet_wait_share(base, steps):
    import torch
    import netdef
    from netdef.data.feed import NetData
    net_file = base / "lenet.prototxt"
    net_file.write_text(LENET % (base / "small.txt", base / "small"))
    net = netdef.parse(str(net_file), "TRAIN")
    gm = netdef.compile_net(net)
    names = netdef.record(gm).input_names
    optimizer = torch.optim.SGD(gm.parameters(), lr=0.01, momentum=0.9)
    feed = NetData(net, workers=1, prefetch=2)
    batches = feed.batches()
    next(batches)                        # worker start-up
    feed.wait_seconds = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        optimizer.zero_grad()
        gm(*[torch.as_tensor(batch[n]) for n in names])["loss"].backward()
        optimizer.step()
    return round(100 * feed.wait_seconds / (time.perf_counter() - start), 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40, help="timed batches per contender")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--steps", type=int, default=60, help="LeNet training steps")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    base = prepare(args.images)
    try:
        import torchvision  # noqa: F401
        tv = torchvision_rate(base, args.batch, args.workers, args.batches)
    except ImportError:
        tv = None
    what = "crop+mirror+mean 227 of 256 JPEG, %d workers" % args.workers
    for layer in ("ImageData", "Data (LMDB)"):
        rate = netdef_rate(base, layer.split()[0], args.batch, args.workers, args.batches)
        emit("%s %s" % (layer, what), rate, "images/s",
             compare_to="torchvision ImageFolder" if tv else None, compare_value=tv,
             ratio=round(rate / tv, 2) if tv else None, target=1.0,
             note=None if tv else "torchvision is not installed: pip install 'netdef[bench]'")
    share = lenet_wait_share(base, args.steps)
    emit("LeNet CPU training step: data-wait share (ImageData, 1 worker)", share, "%",
         compare_to="target share", compare_value=5.0, ratio=round(5.0 / max(share, 0.01), 2), target=1.0)


if __name__ == "__main__":
    main()

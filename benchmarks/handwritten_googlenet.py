"""GoogLeNet as one would write it by hand in PyTorch: the comparison for the compiled
module's speed (benchmarks/bench_compile.py).

It is the net of bvlc_googlenet's deploy.prototxt, written with nn.Conv2d, nn.ReLU(inplace=True),
nn.MaxPool2d(ceil_mode=True) (Caffe rounds pooling output sizes up), nn.LocalResponseNorm
(size 5, alpha 1e-4, beta 0.75, k 1: Caffe's LRN across channels, which also divides alpha
by the size) and torch.cat for the inception outputs. Dropout is the identity in inference
and left out.

`copy_caffe_blobs` fills it from Caffe blobs ({layer name: [weight, bias]}).
"""
import numpy as np
import torch
import torch.nn as nn

# name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), in net order; "pool" marks
# the 3x3 stride-2 max pooling between stages.
INCEPTIONS = [("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64), "pool",
              ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
              ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
              ("4e", 528, 256, 160, 320, 32, 128, 128), "pool",
              ("5a", 832, 256, 160, 320, 32, 128, 128), ("5b", 832, 384, 192, 384, 48, 128, 128)]
BRANCHES = ["1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"]


class Inception(nn.Module):
    def __init__(self, in_ch, c1, c3r, c3, c5r, c5, proj):
        super().__init__()
        self.b1 = nn.Conv2d(in_ch, c1, 1)
        self.b3r = nn.Conv2d(in_ch, c3r, 1)
        self.b3 = nn.Conv2d(c3r, c3, 3, padding=1)
        self.b5r = nn.Conv2d(in_ch, c5r, 1)
        self.b5 = nn.Conv2d(c5r, c5, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.proj = nn.Conv2d(in_ch, proj, 1)
        self.relu = nn.ReLU(inplace=True)

    def convs(self):
        return [self.b1, self.b3r, self.b3, self.b5r, self.b5, self.proj]

    def forward(self, x):
        r = self.relu
        return torch.cat([r(self.b1(x)), r(self.b3(r(self.b3r(x)))), r(self.b5(r(self.b5r(x)))),
                          r(self.proj(self.pool(x)))], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.conv2_reduce = nn.Conv2d(64, 64, 1)
        self.conv2 = nn.Conv2d(64, 192, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.blocks = nn.ModuleList(self.maxpool if spec == "pool" else Inception(*spec[1:])
                                    for spec in INCEPTIONS)
        self.avgpool = nn.AvgPool2d(7, stride=1, ceil_mode=True)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.lrn(self.maxpool(self.relu(self.conv1(x))))
        x = self.relu(self.conv2(self.relu(self.conv2_reduce(x))))
        x = self.maxpool(self.lrn(x))
        for block in self.blocks:
            x = block(x)
        x = self.classifier(torch.flatten(self.avgpool(x), 1))
        return torch.softmax(x, dim=1)


def caffe_names(model):
    """[(module, Caffe layer name)] for every layer with weights, from the prototxt's names."""
    pairs = [(model.conv1, "conv1/7x7_s2"), (model.conv2_reduce, "conv2/3x3_reduce"),
             (model.conv2, "conv2/3x3"), (model.classifier, "loss3/classifier")]
    for spec, block in zip(INCEPTIONS, model.blocks):
        if spec != "pool":
            pairs += [(conv, "inception_%s/%s" % (spec[0], branch))
                      for conv, branch in zip(block.convs(), BRANCHES)]
    return pairs


def copy_caffe_blobs(model, blobs):
    """blobs: {Caffe layer name: [float32 arrays]} of bvlc_googlenet's deploy.prototxt."""
    with torch.no_grad():
        for module, name in caffe_names(model):
            for tensor, arr in zip((module.weight, module.bias), blobs[name]):
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr, np.float32)).reshape(tensor.shape))
    return model

"""ResNet-50 as one would write it by hand in PyTorch: the comparison for the compiled
module's speed and memory.

It is the net of ResNet-50-deploy.prototxt (Kaiming He's Caffe release), written the way
torchvision writes ResNets: nn.Conv2d, nn.BatchNorm2d, nn.ReLU(inplace=True),
nn.MaxPool2d(ceil_mode=True), and `out += identity`. Caffe's release differs from
torchvision in two places, kept here so both compute the same function: the stride of a
downsampling block is on its first 1x1 convolution, and conv1 has a bias.

`copy_caffe_blobs` fills it from Caffe blobs ({layer name: [arrays]}), turning each
BatchNorm + Scale pair into one BatchNorm2d (mean and variance divided by Caffe's factor;
both eps are 1e-5, the prototxt leaves Caffe's default).
"""
import numpy as np
import torch
import torch.nn as nn

STAGES = [("2", 3, 64, 1), ("3", 4, 128, 2), ("4", 6, 256, 2), ("5", 3, 512, 2)]


class Bottleneck(nn.Module):
    def __init__(self, in_ch, mid, out_ch, stride, project):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(out_ch)) if project else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_ch = 64
        self.stages = nn.ModuleList()
        for _, blocks, mid, stride in STAGES:
            stage = nn.Sequential()
            for i in range(blocks):
                stage.append(Bottleneck(in_ch, mid, mid * 4, stride if i == 0 else 1, i == 0))
                in_ch = mid * 4
            self.stages.append(stage)
        self.avgpool = nn.AvgPool2d(7, stride=1, ceil_mode=True)
        self.fc = nn.Linear(2048, num_classes)

    def logits(self, x):
        """fc1000: what training feeds to the loss."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


def caffe_names(model):
    """[(module, Caffe conv layer, Caffe BatchNorm layer, Caffe Scale layer)], from the
    naming scheme of ResNet-50-deploy.prototxt."""
    pairs = [(model.conv1, model.bn1, "conv1", "bn_conv1", "scale_conv1")]
    for (stage_name, _, _, _), stage in zip(STAGES, model.stages):
        for i, block in enumerate(stage):
            b = stage_name + chr(ord("a") + i)
            convs = [(block.conv1, block.bn1, "2a"), (block.conv2, block.bn2, "2b"),
                     (block.conv3, block.bn3, "2c")]
            if block.downsample is not None:
                convs.append((block.downsample[0], block.downsample[1], "1"))
            for conv, bn, branch in convs:
                pairs.append((conv, bn, "res%s_branch%s" % (b, branch), "bn%s_branch%s" % (b, branch),
                              "scale%s_branch%s" % (b, branch)))
    return pairs


def copy_caffe_blobs(model, blobs):
    """blobs: {Caffe layer name: [float32 arrays]} of ResNet-50-deploy.prototxt."""
    def put(tensor, arr):
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(arr, np.float32)).reshape(tensor.shape))

    with torch.no_grad():
        for conv, bn, conv_name, bn_name, scale_name in caffe_names(model):
            put(conv.weight, blobs[conv_name][0])
            if conv.bias is not None:
                put(conv.bias, blobs[conv_name][1])
            mean, var, factor = blobs[bn_name]
            inv = 0.0 if factor.reshape(-1)[0] == 0 else 1.0 / factor.reshape(-1)[0]
            put(bn.running_mean, mean * inv)
            put(bn.running_var, var * inv)
            put(bn.weight, blobs[scale_name][0])
            put(bn.bias, blobs[scale_name][1])
        put(model.fc.weight, blobs["fc1000"][0])
        put(model.fc.bias, blobs["fc1000"][1])
    return model

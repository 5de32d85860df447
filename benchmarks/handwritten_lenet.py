"""LeNet as one would write it by hand in PyTorch: the comparison for training speed.

The net of Caffe's examples/mnist/lenet_train_test.prototxt (and of the golden training
case lenet_sgd_inv): conv 20 5x5, max pool 2x2/2, conv 50 5x5, max pool 2x2/2, fc 500,
ReLU, fc 10; SoftmaxWithLoss is cross_entropy with the batch mean.

`copy_caffe_blobs` fills it from Caffe blobs ({layer name: [arrays]}); `param_groups`
gives torch.optim.SGD lenet_solver's rates: biases learn at lr_mult 2."""
import numpy as np
import torch
import torch.nn as nn

LAYERS = ["conv1", "conv2", "ip1", "ip2"]


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(800, 500)
        self.relu1 = nn.ReLU(inplace=True)
        self.ip2 = nn.Linear(500, 10)

    def logits(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.ip2(self.relu1(self.ip1(torch.flatten(x, 1))))


def copy_caffe_blobs(model, blobs):
    with torch.no_grad():
        for name in LAYERS:
            module = getattr(model, name)
            module.weight.copy_(torch.from_numpy(np.asarray(blobs[name][0], np.float32)).reshape(module.weight.shape))
            module.bias.copy_(torch.from_numpy(np.asarray(blobs[name][1], np.float32)).reshape(module.bias.shape))
    return model


def param_groups(model, lr):
    return [{"params": [getattr(model, n).weight for n in LAYERS], "lr": lr},
            {"params": [getattr(model, n).bias for n in LAYERS], "lr": 2 * lr}]

"""The modules of the elementwise layers (compiler/layers/activations.py)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class CaffePReLU(nn.Module):
    """The slope blob is (C,), or () when one slope is shared; 0.25 until set (Caffe's
    default filler)."""

    def __init__(self, blob_shape):
        super().__init__()
        self.blob_shape = tuple(blob_shape)
        self.weight = nn.Parameter(torch.full(self.blob_shape, 0.25))

    def forward(self, x):
        # F.prelu broadcasts a (C,) slope over axis 1 and gives slope*grad at x == 0, as Caffe.
        return F.prelu(x, self.weight)


class Abs(nn.Module):
    def forward(self, x):
        return torch.abs(x)


class CaffeBNLL(nn.Module):
    def forward(self, x):
        # log(1 + e^x) without overflow: Caffe's x + log(1 + e^-x) for x > 0, in one branch.
        return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


class CaffePower(nn.Module):
    def __init__(self, power, scale, shift):
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def extra_repr(self):
        return "power=%g, scale=%g, shift=%g" % (self.power, self.scale, self.shift)

    def forward(self, x):
        if self.power == 0 or self.scale == 0:
            # Caffe fills a constant (and its gradient is 0), even where 0^negative is inf.
            return torch.full_like(x, 1.0 if self.power == 0 else self.shift ** self.power)
        y = x * self.scale + self.shift
        return y if self.power == 1 else y.pow(self.power)


class CaffeExp(nn.Module):
    def __init__(self, inner, outer):
        super().__init__()
        self.inner, self.outer = inner, outer

    def extra_repr(self):
        return "y = %g * exp(%g * x)" % (self.outer, self.inner)

    def forward(self, x):
        return torch.exp(x * self.inner) * self.outer


class CaffeLog(nn.Module):
    def __init__(self, scale, shift, base_scale):
        super().__init__()
        self.scale, self.shift, self.base_scale = scale, shift, base_scale

    def extra_repr(self):
        return "y = %g * log(%g * x + %g)" % (self.base_scale, self.scale, self.shift)

    def forward(self, x):
        return torch.log(x * self.scale + self.shift) * self.base_scale


class CaffeThreshold(nn.Module):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold

    def extra_repr(self):
        return "threshold=%g" % self.threshold

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


class CaffeClip(nn.Module):
    def __init__(self, lo, hi):
        super().__init__()
        self.lo, self.hi = lo, hi

    def extra_repr(self):
        return "min=%g, max=%g" % (self.lo, self.hi)

    def forward(self, x):
        # clamp passes the gradient on min <= x <= max, bounds included, like Caffe's Clip.
        return torch.clamp(x, self.lo, self.hi)


class CaffeSwish(nn.Module):
    def __init__(self, beta):
        super().__init__()
        self.beta = beta

    def extra_repr(self):
        return "beta=%g" % self.beta

    def forward(self, x):
        return x * torch.sigmoid(x * self.beta)


class CaffeDropout(nn.Module):
    """TRAIN (train()): zero each value with probability `ratio`. With scale_train (BVLC)
    the kept values are scaled by 1/(1-ratio) and TEST is the identity; the fork's
    scale_train: false keeps them as they are and scales by (1-ratio) in TEST instead."""

    def __init__(self, ratio, scale_train=True):
        super().__init__()
        self.ratio, self.scale_train = ratio, scale_train

    def extra_repr(self):
        return "ratio=%g%s" % (self.ratio, "" if self.scale_train else ", scale_train=False")

    def forward(self, x):
        y = F.dropout(x, self.ratio, self.training)
        return y if self.scale_train else y * (1 - self.ratio)

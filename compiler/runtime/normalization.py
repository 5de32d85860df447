"""The modules of LRN, BatchNorm and MVN (compiler/layers/normalization.py)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.base import prod


class CaffeLRN(nn.Module):
    def __init__(self, size, alpha, beta, k, within_channel):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.within_channel = within_channel

    def extra_repr(self):
        return "size=%d, alpha=%g, beta=%g, %s" % (
            self.size, self.alpha, self.beta,
            "WITHIN_CHANNEL" if self.within_channel else "ACROSS_CHANNELS, k=%g" % self.k)

    def forward(self, x):
        if self.within_channel:
            # The padded positions count in the divisor: the mean is the sum / size^2.
            mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2,
                                   count_include_pad=True)
            return x * (1 + self.alpha * mean_sq).pow(-self.beta)
        # PyTorch's LRN is Caffe's for odd sizes: zero-padded channel window of `size`,
        # divided by size, scaled by alpha, plus k (checked by the lrn_across_channels case).
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class CaffeBatchNorm(nn.Module):
    """use_global_stats None follows the module's mode, as Caffe follows the phase:
    eval() (TEST) uses the stored statistics, train() (TRAIN) the batch's."""

    def __init__(self, channels, eps, fraction, use_global_stats=None):
        super().__init__()
        self.channels, self.eps, self.fraction = channels, eps, fraction
        self.use_global_stats = use_global_stats
        # Buffers, not parameters: a solver never updates them (Caffe forces lr_mult 0).
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("factor", torch.zeros(1))

    def extra_repr(self):
        mode = {None: "by mode", True: "always", False: "never"}[self.use_global_stats]
        return "%d, eps=%g, moving_average_fraction=%g, global stats %s" % (
            self.channels, self.eps, self.fraction, mode)

    def uses_global_stats(self):
        return (not self.training) if self.use_global_stats is None else self.use_global_stats

    def global_stats(self):
        """The stored mean and variance: Caffe keeps them multiplied by `factor` (a zero
        factor, a net never trained, gives zeros)."""
        inv = torch.where(self.factor == 0, torch.zeros_like(self.factor), 1 / self.factor)
        return self.mean * inv, self.variance * inv

    def forward(self, x):
        return batch_norm_scale(x, self)


def batch_norm_scale(x, bn, scale=None):
    """Caffe's BatchNorm (a CaffeBatchNorm `bn`), then optionally a per-channel Scale (a
    CaffeScale reading only this BatchNorm: torch_fx fuses the pair), in one pass over `x`
    when the stored statistics are used."""
    weight = scale.weight if scale is not None else None
    bias = scale.bias if scale is not None else None
    # F.batch_norm takes (N, C, ...) as it is (its 4-D kernel is faster than on a flattened
    # view); only a 1-axis bottom needs Caffe's (N, 1) view.
    xb = x if x.dim() > 1 else x.reshape(x.shape[0], 1)
    if bn.uses_global_stats():
        mean, var = bn.global_stats()
        return _shaped_as(F.batch_norm(xb, mean, var, weight, bias, False, 0.0, bn.eps), x)
    # Caffe's view of any bottom: (N, C, everything else).
    xr = xb.reshape(x.shape[0], bn.channels, -1)
    m = xr.numel() // bn.channels
    if m == 1:
        # One value per channel, which F.batch_norm refuses: Caffe normalizes it to 0
        # (x - mean is 0, and so is its gradient; the variance is 0).
        mean, var = xr.detach().reshape(-1), torch.zeros_like(bn.variance)
        y = (xr - xr.mean(dim=(0, 2), keepdim=True)) / math.sqrt(bn.eps)
        if weight is not None:
            y = y * weight[:, None]
        if bias is not None:
            y = y + bias[:, None]
    else:
        # Caffe's batch statistics (biased variance) and its backward, which is the full
        # batch norm gradient: F.batch_norm in training mode computes both in one kernel
        # and keeps only its input and per-channel statistics for backward, where the
        # formula written out elementwise keeps three activations more (a ResNet-50
        # training step took 1.9x the hand-written model's memory). With momentum 1 its
        # running buffers receive the batch mean and the unbiased variance (var * m/(m-1)),
        # exactly what Caffe adds to its sums, without a second pass over x.
        mean, var = torch.zeros_like(bn.mean), torch.zeros_like(bn.variance)
        y = F.batch_norm(xb, mean, var, weight, bias, True, 1.0, bn.eps)
    with torch.no_grad():
        bn.factor.mul_(bn.fraction).add_(1)
        bn.mean.mul_(bn.fraction).add_(mean)
        bn.variance.mul_(bn.fraction).add_(var)
    return _shaped_as(y, x)


def _shaped_as(y, x):
    """y in x's shape, and y itself when it has it already: a reshaped tensor is a view,
    and an in-place ReLU on a view makes autograd copy the whole activation back through
    CopySlices in backward (measured: 14% of a ResNet-50 training step)."""
    return y if y.shape == x.shape else y.reshape(x.shape)


class CaffeMVN(nn.Module):
    def __init__(self, normalize_variance, across_channels, eps):
        super().__init__()
        self.normalize_variance, self.across_channels, self.eps = \
            normalize_variance, across_channels, eps

    def extra_repr(self):
        return "normalize_variance=%s, across_channels=%s, eps=%g" % (
            self.normalize_variance, self.across_channels, self.eps)

    def forward(self, x):
        groups = x.shape[0] if self.across_channels else prod(x.shape[:2])
        xr = x.reshape(groups, -1)
        y = xr - xr.mean(dim=1, keepdim=True)
        if self.normalize_variance:
            y = y / (y.pow(2).mean(dim=1, keepdim=True).sqrt() + self.eps)
        return y.reshape(x.shape)

"""LRN, BatchNorm and MVN, with Caffe's formulas (where eps goes, what blob 2 means).

- LRN ACROSS_CHANNELS: x / (k + alpha/size * sum of x^2 over `size` channels centred on
  the channel, the window clipped at the ends)^beta.
  WITHIN_CHANNEL: x / (1 + alpha/size^2 * sum of x^2 over a size x size window,
  zero-padded by (size-1)/2)^beta; Caffe builds it from AVE pooling and ignores k.
- BatchNorm holds running sums, not averages: blob 2 is the sum of the decay weights, so
  the statistics are mean = blob0/blob2 and var = blob1/blob2 (0 where blob2 is 0).
  eps is added to the variance. TRAIN without use_global_stats normalizes by the batch
  statistics (biased variance) and accumulates blob = fraction*blob + stat, the variance
  stat corrected by m/(m-1), blob2 = fraction*blob2 + 1.
- MVN subtracts the mean per (item, channel), or per item with across_channels, and
  divides by std + eps (eps on the standard deviation, not the variance).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.base import LayerDef, ShapeError, prod

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1


class LRN(LayerDef):
    type = "LRN"
    param_field = "lrn_param"
    dsl_name = "lrn"
    dsl_positional = ("local_size",)
    dsl_abbreviations = {"size": "local_size"}

    def shape(self, layer, shapes):
        self._check(layer, shapes[0])
        return [tuple(shapes[0])]

    def _check(self, layer, shape):
        if len(shape) != 4:
            raise ShapeError("LRN needs an (N, C, H, W) input, got %s" % list(shape))
        size = layer.param.lrn_param.local_size
        if size % 2 == 0:
            raise ShapeError("local_size %d is even; Caffe's LRN supports odd sizes only" % size,
                             "use local_size %d or %d" % (size - 1, size + 1) if size else None)

    def workspace_values(self, layer, shapes):
        """ACROSS_CHANNELS (F.local_response_norm) holds the squares and the squares
        zero-padded to C + size - 1 channels at once; WITHIN_CHANNEL the squares and their
        window means. Caffe's own workspace is the same size (its padded_square and
        scale blobs), so a huge local_size costs memory, not just time."""
        n, c, h, w = shapes[0]
        size = layer.param.lrn_param.local_size
        channels = 2 * c if layer.param.lrn_param.norm_region == WITHIN_CHANNEL else 2 * c + size - 1
        return n * channels * h * w

    def lower(self, layer, shapes):
        self._check(layer, shapes[0])
        p = layer.param.lrn_param
        return CaffeLRN(p.local_size, p.alpha, p.beta, p.k, p.norm_region == WITHIN_CHANNEL)


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


class BatchNorm(LayerDef):
    type = "BatchNorm"
    fresh_output = True
    param_field = "batch_norm_param"
    in_place = True
    dsl_name = "bn"
    dsl_abbreviations = {"global": "use_global_stats"}
    blob_names = ("mean", "variance", "factor")
    stat_blobs = (0, 1, 2)

    def shape(self, layer, shapes):
        eps = layer.param.batch_norm_param.eps
        # Caffe takes any eps, and a negative one makes var + eps negative (NaN outputs)
        # for every channel whose variance is smaller: refused here, before anything runs.
        if not 0 <= eps < math.inf:
            raise ShapeError("eps %g must be a finite number >= 0: it is added to the variance "
                             "before the square root" % eps, "Caffe's default is 1e-5")
        return [tuple(shapes[0])]

    def blob_shapes(self, layer, shapes):
        c = _bn_channels(shapes[0])
        return [(c,), (c,), (1,)]

    def uses_global_stats(self, layer, phase):
        """Whether the layer normalizes with its stored statistics in `phase` (TRAIN or
        TEST): Caffe's use_global_stats defaults to (phase == TEST)."""
        p = layer.param.batch_norm_param
        return p.use_global_stats if p.HasField("use_global_stats") else phase == "TEST"

    def lower(self, layer, shapes):
        p = layer.param.batch_norm_param
        return CaffeBatchNorm(_bn_channels(shapes[0]), p.eps, p.moving_average_fraction,
                              p.use_global_stats if p.HasField("use_global_stats") else None)


def _bn_channels(shape):
    if not shape:
        raise ShapeError("BatchNorm needs a bottom with at least one axis")
    return shape[1] if len(shape) > 1 else 1


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


class MVN(LayerDef):
    type = "MVN"
    param_field = "mvn_param"

    def shape(self, layer, shapes):
        _mvn_check(shapes[0])
        return [tuple(shapes[0])]

    def lower(self, layer, shapes):
        _mvn_check(shapes[0])
        p = layer.param.mvn_param
        return CaffeMVN(p.normalize_variance, p.across_channels, p.eps)


def _mvn_check(shape):
    # Caffe's MVN reads num() and channels(), legacy accessors for blobs of up to 4 axes.
    if not 1 <= len(shape) <= 4:
        raise ShapeError("MVN takes a bottom of 1 to 4 axes (N, C, H, W), got %s" % list(shape))


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


LAYERS = [LRN(), BatchNorm(), MVN()]

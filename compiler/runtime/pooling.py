"""The modules of Pooling and SPP (compiler/layers/pooling.py)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.errors import NetdefError
from compiler.layers.arithmetic import FLT_MAX, padding_after, pooled_sizes, spp_level, torch_pools_as_caffe


class CaffePool2d(nn.Module):
    def __init__(self, is_max, kernel, pad, stride, ceil, global_pooling=False):
        super().__init__()
        self.is_max = is_max
        self.kernel, self.pad, self.stride = tuple(kernel), tuple(pad), tuple(stride)
        self.ceil = ceil
        self.global_pooling = global_pooling

    def extra_repr(self):
        return "%s, kernel=%s, stride=%s, pad=%s, %s" % (
            "MAX" if self.is_max else "AVE", "global" if self.global_pooling else self.kernel,
            self.stride, self.pad, "ceil" if self.ceil else "floor")

    def forward(self, x):
        if self.global_pooling:
            return x.amax(dim=(2, 3), keepdim=True) if self.is_max else x.mean(dim=(2, 3), keepdim=True)
        return caffe_pool2d(x, self.is_max, self.kernel, self.pad, self.stride, self.ceil)


class CaffeSPP(nn.Module):
    """Caffe's SPP (compiler/layers/pooling.py): each level's geometry comes from the
    input it gets, as Caffe's Reshape recomputes it. `layer`, the Caffe layer's name,
    names it in the error for an input too small for the pyramid."""

    def __init__(self, pyramid_height, is_max, layer=None):
        super().__init__()
        self.pyramid_height, self.is_max, self.layer = pyramid_height, is_max, layer

    def extra_repr(self):
        return "%s, pyramid_height=%d" % ("MAX" if self.is_max else "AVE", self.pyramid_height)

    def forward(self, x):
        h, w = x.shape[-2], x.shape[-1]
        levels = []
        for i in range(self.pyramid_height):
            kernel, pad = spp_level(h, w, i)
            if any(p >= k for p, k in zip(pad, kernel)):
                raise NetdefError(None, None, self.layer, "a %dx%d input is too small for pyramid_height "
                                  "%d: level %d pads %s, not less than its kernel %s, which Caffe's "
                                  "Pooling refuses" % (h, w, self.pyramid_height, i, pad, kernel),
                                  "feed an input of at least the size the net was built for")
            levels.append(caffe_pool2d(x, self.is_max, kernel, pad, kernel, True))
        if self.pyramid_height == 1:
            return levels[0]
        return torch.cat([level.flatten(1) for level in levels], 1)


def caffe_pool2d(x, is_max, kernel, pad, stride, ceil):
    """Caffe's Pooling of the (N, C, H, W) tensor x: Pooling's module, and the pooling of
    each SPP pyramid level with the geometry SPP computes for it."""
    h, w = x.shape[-2], x.shape[-1]
    out = pooled_sizes((h, w), kernel, pad, stride, ceil)
    if torch_pools_as_caffe((h, w), out, kernel, pad, stride, ceil):
        if is_max:
            return F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
        return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)
    extra = padding_after((h, w), out, kernel, pad, stride)
    # A window wholly outside the input gives -FLT_MAX for MAX, as in Caffe.
    xp = F.pad(x, (pad[1], extra[1], pad[0], extra[0]), value=-FLT_MAX if is_max else 0.0)
    if is_max:
        return F.max_pool2d(xp, kernel, stride)[..., :out[0], :out[1]]
    total = F.avg_pool2d(xp, kernel, stride, divisor_override=1)[..., :out[0], :out[1]]
    return total / _divisor(out, (h, w), kernel, pad, stride, x.dtype, x.device)


def _divisor(out, size, kernel, pad, stride, dtype, device):
    """Caffe's AVE divisor per output position: the window clipped to [-pad, size + pad)."""
    counts = []
    for o, n, k, p, s in zip(out, size, kernel, pad, stride):
        start = torch.arange(o, device=device) * s - p
        end = torch.clamp(start + k, max=n + p)
        counts.append((end - start).to(dtype))
    return counts[0][:, None] * counts[1][None, :]

"""The modules of Scale and Bias (compiler/layers/scale_bias.py)."""
import torch
import torch.nn as nn


def _expand(t, ones):
    """A view of the operand with size-1 trailing axes, so that it broadcasts against the
    bottom; the leading axes broadcast by PyTorch's right-aligned rule."""
    return t.reshape(t.shape + ones) if ones else t


class CaffeScale(nn.Module):
    """forward(x) with the learned `weight` (weight=True), or forward(x, scale) with a
    second bottom; `shape` is the operand's, that of the learned blobs. Until set, the
    scale is 1 and the bias 0 (Caffe's default fillers)."""

    def __init__(self, trailing, shape, weight=True, bias=False):
        super().__init__()
        self.trailing, self.shape = trailing, tuple(shape)
        self.ones = (1,) * trailing
        self.register_parameter("weight", nn.Parameter(torch.ones(self.shape)) if weight else None)
        self.register_parameter("bias", nn.Parameter(torch.zeros(self.shape)) if bias else None)

    def extra_repr(self):
        return "trailing axes=%d" % len(self.ones)

    def forward(self, x, *scale):
        s = _expand(scale[0] if scale else self.weight, self.ones)
        if self.bias is None:
            return x * s
        return torch.addcmul(_expand(self.bias, self.ones), x, s)


class CaffeBias(nn.Module):
    """forward(x) with a learned `bias` of the given shape (0 until set), or forward(x,
    bias) with a second bottom (shape None)."""

    def __init__(self, trailing, shape=None):
        super().__init__()
        self.trailing, self.shape = trailing, None if shape is None else tuple(shape)
        self.ones = (1,) * trailing
        self.register_parameter("bias", None if shape is None else nn.Parameter(torch.zeros(self.shape)))

    def extra_repr(self):
        return "trailing axes=%d" % len(self.ones)

    def forward(self, x, *bias):
        return x + _expand(bias[0] if bias else self.bias, self.ones)

"""Pooling, MAX and AVE, with Caffe's exact output sizes and divisors.

Caffe rounds the output size up (round_mode CEIL, the default; `ceil_mode: false` from
forks and round_mode FLOOR round down), then, when there is padding, drops a last window
that would start inside the padding: if (out-1)*stride >= in + pad, out -= 1.
AVE divides by the window counted up to in + pad (padding included), not by the real
pixels. PyTorch's ceil_mode pooling follows the same rules while pad <= kernel/2 and no
window lies wholly outside the input; elsewhere (pad > kernel/2, stride > kernel) the
module pads explicitly and computes Caffe's divisors itself.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.base import LayerDef, ShapeError, geometry_text, prod, spatial_geometry
from compiler.proto import caffe_pb2

MAX, AVE, STOCHASTIC = 0, 1, 2
FLT_MAX = 3.4028234663852886e38


def pooled_size(size, kernel, pad, stride, ceil):
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooling(LayerDef):
    type = "Pooling"
    param_field = "pooling_param"
    dsl_name = "pool"
    dsl_positional = ("pool", "kernel_size", "stride", "pad")
    dsl_abbreviations = {"k": "kernel_size", "s": "stride", "p": "pad", "global": "global_pooling"}
    draw_color = "#ffc266"

    def draw_label(self, layer):
        q = layer.param.pooling_param
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(q.pool)
        return method + (" global" if q.global_pooling else " " + geometry_text(q))

    def geometry(self, layer, shape):
        p = layer.param.pooling_param
        if len(shape) != 4:
            raise ShapeError("Pooling needs an (N, C, H, W) input, got %s" % list(shape))
        kernel, pad, stride, _ = spatial_geometry(p, 2, has_dilation=False)
        if p.global_pooling:
            if p.kernel_size or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise ShapeError("global_pooling takes its kernel from the input; remove kernel_size")
            if any(pad) or any(s != 1 for s in stride):
                raise ShapeError("global_pooling needs pad 0 and stride 1")
            kernel = list(shape[2:])
        elif any(k is None for k in kernel):
            raise ShapeError("kernel size is not set", "add kernel_size, or global_pooling: true")
        if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride):
            raise ShapeError("kernel and stride must be positive (kernel %s, stride %s)" % (kernel, stride))
        for k, pd in zip(kernel, pad):
            if pd >= k:
                raise ShapeError("pad %d is not smaller than kernel %d (Caffe requires pad < kernel)" % (pd, k))
        if p.pool == STOCHASTIC:
            raise ShapeError("STOCHASTIC pooling is not supported", "use MAX or AVE")
        ceil = p.round_mode == p.CEIL and p.ceil_mode
        return p.pool, kernel, pad, stride, ceil

    def shape(self, layer, shapes):
        shape = shapes[0]
        _, kernel, pad, stride, ceil = self.geometry(layer, shape)
        out = []
        for size, k, pd, s in zip(shape[2:], kernel, pad, stride):
            if size + 2 * pd < k:
                raise ShapeError("kernel %d is larger than the padded input %d (size %d + 2*pad %d)"
                                 % (k, size + 2 * pd, size, pd),
                                 "use a smaller kernel or more padding, or check the input size")
            out.append(pooled_size(size, k, pd, s, ceil))
        return [tuple(shape[:2]) + tuple(out)]

    def workspace_values(self, layer, shapes):
        """Where PyTorch's pooling cannot follow Caffe (pad > kernel/2, a window wholly in
        the padding) the module pads the input explicitly: a kernel of thousands with the
        padding it needs makes that copy huge while the top stays small."""
        if layer.param.pooling_param.global_pooling:
            return 0
        n, c, h, w = shapes[0]
        _, kernel, pad, stride, ceil = self.geometry(layer, shapes[0])
        out = self.shape(layer, shapes)[0][2:]
        if _torch_pools_as_caffe((h, w), out, kernel, pad, stride, ceil):
            return 0
        after = _padding_after((h, w), out, kernel, pad, stride)
        return n * c * (h + pad[0] + after[0]) * (w + pad[1] + after[1])

    def backward_values(self, layer, shapes, out_shapes):
        """Max pooling keeps the argmax of every output as int64 (two float32s' worth),
        as Caffe keeps its max_idx_ blob; average pooling keeps nothing."""
        return 2 * prod(out_shapes[0]) if layer.param.pooling_param.pool == MAX else 0

    def lower(self, layer, shapes):
        method, kernel, pad, stride, ceil = self.geometry(layer, shapes[0])
        return CaffePool2d(method == MAX, kernel, pad, stride, ceil,
                           layer.param.pooling_param.global_pooling)


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
        h, w = x.shape[-2], x.shape[-1]
        if self.global_pooling:
            return x.amax(dim=(2, 3), keepdim=True) if self.is_max else x.mean(dim=(2, 3), keepdim=True)
        kernel, pad, stride = self.kernel, self.pad, self.stride
        out = (pooled_size(h, kernel[0], pad[0], stride[0], self.ceil),
               pooled_size(w, kernel[1], pad[1], stride[1], self.ceil))
        if _torch_pools_as_caffe((h, w), out, kernel, pad, stride, self.ceil):
            if self.is_max:
                return F.max_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil)
            return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil, count_include_pad=True)
        return self._general(x, h, w, out)

    def _general(self, x, h, w, out):
        kernel, pad, stride = self.kernel, self.pad, self.stride
        extra = _padding_after((h, w), out, kernel, pad, stride)
        # A window wholly outside the input gives -FLT_MAX for MAX, as in Caffe.
        xp = F.pad(x, (pad[1], extra[1], pad[0], extra[0]), value=-FLT_MAX if self.is_max else 0.0)
        if self.is_max:
            return F.max_pool2d(xp, kernel, stride)[..., :out[0], :out[1]]
        total = F.avg_pool2d(xp, kernel, stride, divisor_override=1)[..., :out[0], :out[1]]
        return total / _divisor(out, (h, w), kernel, pad, stride, x.dtype, x.device)


def _torch_pools_as_caffe(size, out, kernel, pad, stride, ceil):
    """PyTorch's pooling applies Caffe's rules exactly when it accepts the padding and its
    own size rule gives the same output: then the module uses it, the fast kernel;
    otherwise it pads the input explicitly."""
    return all(2 * p <= k and _torch_size(n, k, p, s, ceil) == o
               for n, o, k, p, s in zip(size, out, kernel, pad, stride))


def _padding_after(size, out, kernel, pad, stride):
    """The padding after each spatial axis that the last window needs."""
    return [max(0, (o - 1) * s + k - n - p) for o, s, k, n, p in zip(out, stride, kernel, size, pad)]


def _torch_size(size, kernel, pad, stride, ceil):
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _divisor(out, size, kernel, pad, stride, dtype, device):
    """Caffe's AVE divisor per output position: the window clipped to [-pad, size + pad)."""
    counts = []
    for o, n, k, p, s in zip(out, size, kernel, pad, stride):
        start = torch.arange(o, device=device) * s - p
        end = torch.clamp(start + k, max=n + p)
        counts.append((end - start).to(dtype))
    return counts[0][:, None] * counts[1][None, :]


LAYERS = [Pooling()]

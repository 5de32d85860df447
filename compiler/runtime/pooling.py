"""The module of Pooling (compiler/layers/pooling.py)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.arithmetic import FLT_MAX, padding_after, pooled_size, torch_pools_as_caffe


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
        if torch_pools_as_caffe((h, w), out, kernel, pad, stride, self.ceil):
            if self.is_max:
                return F.max_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil)
            return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=self.ceil, count_include_pad=True)
        return self._general(x, h, w, out)

    def _general(self, x, h, w, out):
        kernel, pad, stride = self.kernel, self.pad, self.stride
        extra = padding_after((h, w), out, kernel, pad, stride)
        # A window wholly outside the input gives -FLT_MAX for MAX, as in Caffe.
        xp = F.pad(x, (pad[1], extra[1], pad[0], extra[0]), value=-FLT_MAX if self.is_max else 0.0)
        if self.is_max:
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

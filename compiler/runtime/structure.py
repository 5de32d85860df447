"""The modules of the layers that combine, split or rearrange blobs
(compiler/layers/structure.py)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.arithmetic import reshape_target, slice_sizes


class CaffeEltwise(nn.Module):
    """operation: "SUM" (with one coeff per bottom, or None for all 1), "PROD" or "MAX"."""

    def __init__(self, operation, coeff=None):
        super().__init__()
        self.operation = operation
        self.coeff = coeff

    def extra_repr(self):
        return self.operation + (", coeff=%s" % self.coeff if self.coeff else "")

    def forward(self, *bottoms):
        if self.operation == "SUM":
            if self.coeff is None:
                return sum(bottoms[1:], bottoms[0])
            return sum(c * b for c, b in zip(self.coeff, bottoms))
        if self.operation == "PROD":
            top = bottoms[0]
            for b in bottoms[1:]:
                top = top * b
            return top
        # Caffe's ties: bottom 0 beats bottom 1 only when strictly greater, and a later
        # bottom replaces the maximum only when strictly greater. Its gradient goes to the
        # winner alone. torch.where reproduces both.
        top = torch.where(bottoms[0] > bottoms[1], bottoms[0], bottoms[1])
        for b in bottoms[2:]:
            top = torch.where(b > top, b, top)
        return top


class InPlaceSum(nn.Module):
    """Eltwise SUM of two bottoms, accumulated into bottom `into`, which no one else reads
    (the backend checks that: accounting.private_fresh_bottoms). Float addition is
    commutative, so the result is bitwise that of the out-of-place sum."""

    def __init__(self, into):
        super().__init__()
        self.into = into

    def extra_repr(self):
        return "SUM into bottom %d" % self.into

    def forward(self, a, b):
        return a.add_(b) if self.into == 0 else b.add_(a)


class CaffeConcat(nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def extra_repr(self):
        return "axis=%d" % self.axis

    def forward(self, *bottoms):
        return torch.cat(bottoms, self.axis)


class CaffeSlice(nn.Module):
    def __init__(self, axis, points, tops):
        super().__init__()
        self.axis, self.points, self.tops = axis, points, tops

    def extra_repr(self):
        return "axis=%d, %s" % (self.axis, "slice_point=%s" % self.points if self.points
                                else "%d even parts" % self.tops)

    def forward(self, x):
        parts = torch.split(x, slice_sizes(x.shape[self.axis], self.points, self.tops, self.axis),
                            self.axis)
        return parts if self.tops > 1 else parts[0]


class CaffeSplit(nn.Module):
    def __init__(self, tops):
        super().__init__()
        self.tops = tops

    def extra_repr(self):
        return "tops=%d" % self.tops

    def forward(self, x):
        return (x,) * self.tops if self.tops > 1 else x


class CaffeCrop(nn.Module):
    def __init__(self, axis, offsets):
        super().__init__()
        self.axis, self.offsets = axis, offsets

    def extra_repr(self):
        return "axis=%d, offsets=%s" % (self.axis, self.offsets)

    def forward(self, x, reference):
        index = [slice(None)] * self.axis + [slice(off, off + n) for off, n in
                                             zip(self.offsets, reference.shape[self.axis:])]
        return x[tuple(index)]


class CaffeReshape(nn.Module):
    def __init__(self, dims, axis, num_axes):
        super().__init__()
        self.dims, self.axis, self.num_axes = dims, axis, num_axes

    def extra_repr(self):
        return "shape=%s, axis=%d, num_axes=%d" % (self.dims, self.axis, self.num_axes)

    def forward(self, x):
        # Caffe reinterprets the flat data, which is also what keeps torch.export's shape
        # reasoning free of batch-size guards (x.reshape alone adds one); torch infers
        # the -1 as Caffe does.
        return x.flatten().reshape(reshape_target(tuple(x.shape), self.dims, self.axis, self.num_axes))


class CaffeTile(nn.Module):
    def __init__(self, repeats):
        super().__init__()
        self.repeats = repeats

    def extra_repr(self):
        return "repeats=%s" % self.repeats

    def forward(self, x):
        return x.repeat(*self.repeats)


class CaffeIm2col(nn.Module):
    """F.unfold's columns are Caffe's (channel-major, then kernel row, then column); the
    positions, one row of windows after another, are the output's H x W."""

    def __init__(self, kernel, pad, stride, dilation):
        super().__init__()
        self.kernel, self.pad = tuple(kernel), tuple(pad)
        self.stride, self.dilation = tuple(stride), tuple(dilation)

    def extra_repr(self):
        return "kernel=%s, stride=%s, pad=%s, dilation=%s" % (self.kernel, self.stride, self.pad, self.dilation)

    def forward(self, x):
        out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, p, s, d in
               zip(x.shape[2:], self.kernel, self.pad, self.stride, self.dilation)]
        columns = F.unfold(x, self.kernel, self.dilation, self.pad, self.stride)
        return columns.reshape(x.shape[0], columns.shape[1], out[0], out[1])


class CaffeSilence(nn.Module):
    def forward(self, *bottoms):
        return ()

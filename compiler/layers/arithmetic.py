"""Caffe's arithmetic that a shape rule applies when a net is checked and a runtime module
(compiler/runtime) applies again to the tensors it gets, as Caffe re-applies each shape
rule whenever its inputs change size (Net::Reshape): a compiled net then runs with any
batch size the rules allow. Plain Python, so that checking a net needs no torch.
"""
import math
import struct

from compiler.layers.base import ShapeError

# Caffe's FLT_MAX (float32's largest value): MAX pooling's value of a window wholly in the
# padding, DetectionOutput's confidence threshold when none is given.
FLT_MAX = 3.4028234663852886e38


def f32(x):
    """x rounded to the nearest float32, as a Python float. One +, -, *, / or sqrt of
    float32 values computed in double and rounded so is the float32 operation's result
    (double has more than twice float's precision), so Caffe's float arithmetic on
    parameters is written as Python arithmetic wrapped in f32."""
    return struct.unpack("f", struct.pack("f", x))[0]


def pooled_sizes(sizes, kernel, pad, stride, ceil):
    """Caffe's Pooling output size on each spatial axis (rounding as
    compiler/layers/pooling.py says). PoolingLayer::Reshape drops a last window that would
    start in the padding on every axis as soon as any axis is padded (`if (pad_h_ ||
    pad_w_)`): an axis without padding loses such a window too when the other has some."""
    out = []
    for size, k, p, s in zip(sizes, kernel, pad, stride):
        span = size + 2 * p - k
        n = (math.ceil(span / s) if ceil else span // s) + 1
        if any(pad) and (n - 1) * s >= size + p:
            n -= 1
        out.append(n)
    return tuple(out)


def torch_pools_as_caffe(size, out, kernel, pad, stride, ceil):
    """PyTorch's pooling applies Caffe's rules exactly when it accepts the padding and its
    own size rule gives the same output: then the module uses it, the fast kernel;
    otherwise it pads the input explicitly."""
    return all(2 * p <= k and _torch_size(n, k, p, s, ceil) == o
               for n, o, k, p, s in zip(size, out, kernel, pad, stride))


def padding_after(size, out, kernel, pad, stride):
    """The padding after each spatial axis that the last window needs."""
    return [max(0, (o - 1) * s + k - n - p) for o, s, k, n, p in zip(out, stride, kernel, size, pad)]


def _torch_size(size, kernel, pad, stride, ceil):
    """PyTorch's pooling output size on one axis."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def spp_level(height, width, level):
    """Caffe's SPP (SPPLayer::GetPoolingParam): pyramid level `level` pools an H x W input
    into 2^level bins per axis, with kernel ceil(size / bins), stride = kernel, and pad
    half, rounded up, of the kernel * bins - size positions the bins overhang the input.
    -> (kernel, pad), each [height axis, width axis]. Caffe then builds a Pooling layer
    of that geometry, whose checks and output size (pooled_sizes) apply: an input with
    fewer than about bins positions gets pad >= kernel, which Pooling refuses (13 x 13 at
    level 3: kernel 2, pad 2)."""
    bins = 2 ** level
    kernel = [-(-size // bins) for size in (height, width)]
    pad = [(k * bins - size + 1) // 2 for k, size in zip(kernel, (height, width))]
    return kernel, pad


def slice_sizes(size, points, tops, axis):
    """Caffe's Slice: slice_point gives the boundaries (one fewer than tops, increasing);
    without it the axis splits evenly."""
    if points:
        if len(points) != tops - 1:
            raise ShapeError("%d slice_point values for %d tops" % (len(points), tops),
                             "give one slice_point fewer than tops (%d)" % (tops - 1))
        bounds = [0] + points + [size]
        if any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ShapeError("slice_point %s must increase strictly inside (0, %d), the size of "
                             "axis %d" % (points, size, axis))
        return [b - a for a, b in zip(bounds, bounds[1:])]
    if size % tops:
        raise ShapeError("%d tops do not split axis %d of size %d evenly" % (tops, axis, size),
                         "add slice_point values, or use a number of tops that divides %d" % size)
    return [size // tops] * tops


def reshape_target(shape, dims, axis, num_axes):
    """Caffe's Reshape: `dims` replaces the axes [axis, axis + num_axes) (num_axes -1: to
    the end; a negative axis counts from the end, -1 being after the last), and 0 copies
    the bottom's dimension at that place. One -1 is left for reshape_rule (or torch, which
    infers it the same way) to fill in."""
    ndim = len(shape)
    start = axis if axis >= 0 else ndim + axis + 1
    if not 0 <= start <= ndim:
        raise ShapeError("reshape axis %d is out of range for a %d-axis blob" % (axis, ndim))
    if num_axes < -1:
        raise ShapeError("num_axes %d: give -1 (all remaining axes) or a count" % num_axes)
    end = ndim if num_axes == -1 else start + num_axes
    if end > ndim:
        raise ShapeError("axis %d + num_axes %d goes past the %d axes of the bottom" % (start, num_axes, ndim))
    if dims.count(-1) > 1:
        raise ShapeError("shape %s has more than one -1" % dims, "infer at most one dimension")
    bad = [d for d in dims if d < -1]
    if bad:
        raise ShapeError("shape dimension %d is invalid" % bad[0], "use a size, 0 (copy) or -1 (infer)")
    out = list(shape[:start])
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= ndim:
                raise ShapeError("shape %s has a 0 at position %d, but the bottom has no axis %d to "
                                 "copy" % (dims, i, start + i))
            d = shape[start + i]
        out.append(d)
    return out + list(shape[end:])

"""Layers that reduce or normalise along an axis: Softmax, ArgMax, Reduction."""
import torch
import torch.nn as nn

from compiler.layers.base import LayerDef, ShapeError, canonical_axis, prod
from compiler.proto import caffe_pb2


class Softmax(LayerDef):
    type = "Softmax"
    param_field = "softmax_param"
    dsl_name = "softmax"

    def shape(self, layer, shapes):
        canonical_axis(layer.param.softmax_param.axis, len(shapes[0]))
        return [tuple(shapes[0])]

    def lower(self, layer, shapes):
        return nn.Softmax(dim=canonical_axis(layer.param.softmax_param.axis, len(shapes[0])))


class ArgMax(LayerDef):
    """The top_k largest values' indices (as floats) or values.

    Without `axis` it ranks each item's C*H*W values and gives (N, 1, top_k, 1...), or
    with out_max_val (N, 2, top_k, 1...): the indices, then the values (at least 3 axes).
    With `axis` the top has the bottom's shape with top_k on that axis, holding the
    indices, or the values alone with out_max_val. Caffe has no backward for it.
    """
    type = "ArgMax"
    param_field = "argmax_param"

    def axis(self, layer, shape):
        p = layer.param.argmax_param
        axis = canonical_axis(p.axis, len(shape)) if p.HasField("axis") else None
        ranked = prod(shape[1:]) if axis is None else shape[axis]
        if not 1 <= p.top_k <= ranked:
            raise ShapeError("top_k %d is not in 1..%d, the number of values ranked %s"
                             % (p.top_k, ranked, "per item" if axis is None else "on axis %d" % axis),
                             "use a top_k from 1 to %d" % ranked)
        return axis

    def shape(self, layer, shapes):
        p = layer.param.argmax_param
        shape = list(shapes[0])
        axis = self.axis(layer, shape)
        if axis is not None:
            shape[axis] = p.top_k
            return [tuple(shape)]
        out = [1] * max(3, len(shape))
        out[0], out[1], out[2] = shape[0], 2 if p.out_max_val else 1, p.top_k
        return [tuple(out)]

    def lower(self, layer, shapes):
        p = layer.param.argmax_param
        return CaffeArgMax(self.axis(layer, shapes[0]), p.top_k, p.out_max_val)


class CaffeArgMax(nn.Module):
    def __init__(self, axis, top_k, out_max_val):
        super().__init__()
        self.axis, self.top_k, self.out_max_val = axis, top_k, out_max_val

    def extra_repr(self):
        return "axis=%s, top_k=%d%s" % (self.axis, self.top_k, ", out_max_val" if self.out_max_val else "")

    def forward(self, x):
        if self.axis is not None:
            values, indices = self._top_k(x, self.axis)
            return values if self.out_max_val else indices
        values, indices = self._top_k(x.flatten(1), 1)
        top = torch.stack([indices, values], 1) if self.out_max_val else indices.unsqueeze(1)
        return top.reshape(top.shape + (1,) * (x.dim() - 3))

    def _top_k(self, x, dim):
        # Caffe sorts (value, index) pairs in decreasing order, so among equal values the
        # larger index ranks first: sort the reversed axis stably, then undo the reversal.
        n = x.shape[dim]
        values, reversed_index = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
        indices = (n - 1) - reversed_index.narrow(dim, 0, self.top_k)
        return values.narrow(dim, 0, self.top_k), indices.to(x.dtype)


class Reduction(LayerDef):
    """SUM, ASUM (sum of |x|), SUMSQ or MEAN of all the axes from `axis` on, times coeff.
    The top keeps the axes before `axis`: axis 0 gives a 0-axis blob."""
    type = "Reduction"
    param_field = "reduction_param"

    def axis(self, layer, shape):
        return canonical_axis(layer.param.reduction_param.axis, len(shape))

    def shape(self, layer, shapes):
        return [tuple(shapes[0][:self.axis(layer, shapes[0])])]

    def macs(self, layer, shapes, out_shapes):
        return prod(shapes[0][1:])

    def lower(self, layer, shapes):
        p = layer.param.reduction_param
        return CaffeReduction(caffe_pb2.ReductionParameter.ReductionOp.Name(p.operation),
                              self.axis(layer, shapes[0]), p.coeff)


class CaffeReduction(nn.Module):
    """operation: "SUM", "ASUM", "SUMSQ" or "MEAN"."""

    def __init__(self, operation, axis, coeff):
        super().__init__()
        self.operation, self.axis, self.coeff = operation, axis, coeff

    def extra_repr(self):
        return "%s, axis=%d, coeff=%g" % (self.operation, self.axis, self.coeff)

    def forward(self, x):
        x = x.reshape(x.shape[:self.axis] + (-1,))
        if self.operation == "ASUM":
            x = x.abs()
        elif self.operation == "SUMSQ":
            x = x * x
        coeff = self.coeff / x.shape[-1] if self.operation == "MEAN" else self.coeff
        return x.sum(-1) * coeff


LAYERS = [Softmax(), ArgMax(), Reduction()]

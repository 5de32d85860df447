"""Layers that reduce or normalise along an axis: Softmax, ArgMax, Reduction."""
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
        import torch.nn as nn
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
        from compiler.runtime.reduction import CaffeArgMax
        p = layer.param.argmax_param
        return CaffeArgMax(self.axis(layer, shapes[0]), p.top_k, p.out_max_val)


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
        from compiler.runtime.reduction import CaffeReduction
        p = layer.param.reduction_param
        return CaffeReduction(caffe_pb2.ReductionParameter.ReductionOp.Name(p.operation),
                              self.axis(layer, shapes[0]), p.coeff)


LAYERS = [Softmax(), ArgMax(), Reduction()]

"""Scale and Bias: multiply by / add an operand broadcast along the bottom's axes.

The operand spans the bottom's axes axis .. axis+k and is repeated over the others. It is
a learned blob shaped bottom.shape[axis : axis+num_axes] (num_axes -1: to the end, 0: one
scalar, a 0-axis blob), or the second bottom, whose own shape fixes k (a 0-axis second
bottom broadcasts from axis 0). Scale's bias_term adds a bias blob shaped like the scale;
with two bottoms that bias is the layer's only blob, so it is blob 0.
Default fillers: Scale's scale constant 1, every bias constant 0.
"""
from compiler.layers.base import LayerDef, ShapeError, canonical_axis
from compiler.layers.fillers import fill


def operand_geometry(p, shapes):
    """(axis, operand shape) with Caffe's rules and checks, for scale_param / bias_param."""
    x = tuple(shapes[0])
    if len(shapes) > 1:
        operand = tuple(shapes[1])
        axis = 0 if not operand else canonical_axis(p.axis, len(x))
    else:
        if p.num_axes < -1:
            raise ShapeError("num_axes %d: use -1 (all axes from `axis`) or a count >= 0" % p.num_axes)
        axis = canonical_axis(p.axis, len(x))
        end = len(x) if p.num_axes == -1 else axis + p.num_axes
        if end > len(x):
            raise ShapeError("axis %d with num_axes %d reaches past the bottom's %d axes"
                             % (p.axis, p.num_axes, len(x)))
        operand = x[axis:end]
    if x[axis:axis + len(operand)] != operand:
        raise ShapeError("operand shape %s does not match the bottom's axes %d..%d %s"
                         % (list(operand), axis, axis + len(operand) - 1,
                            list(x[axis:axis + len(operand)])),
                         "the second bottom must equal a run of the first bottom's shape "
                         "starting at `axis`")
    return axis, operand


class _Broadcast(LayerDef):
    bottoms = (1, 2)

    def shape(self, layer, shapes):
        operand_geometry(self.params(layer), shapes)
        return [tuple(shapes[0])]

    def trailing(self, layer, shapes):
        """Axes of the bottom after the operand, over which the operand repeats."""
        axis, operand = operand_geometry(self.params(layer), shapes)
        return len(shapes[0]) - axis - len(operand)


class Scale(_Broadcast):
    type = "Scale"
    fresh_output = True
    param_field = "scale_param"
    in_place = True
    dsl_name = "scale"
    dsl_abbreviations = {"bias": "bias_term"}
    blob_names = ("weight", "bias")

    def blob_shapes(self, layer, shapes):
        _, operand = operand_geometry(layer.param.scale_param, shapes)
        return [operand] * len(self.blob_attrs(layer, shapes))

    def blob_attrs(self, layer, shapes):
        learned = ("weight",) if len(shapes) == 1 else ()
        return learned + (("bias",) if layer.param.scale_param.bias_term else ())

    def per_channel(self, layer, shapes):
        """One learned factor per channel (axis 1, num_axes 1) of a bottom with a channel
        axis: the Scale after a BatchNorm, which the backend fuses and the fast path folds."""
        p = layer.param.scale_param
        return len(shapes) == 1 and len(shapes[0]) >= 2 and p.num_axes == 1 \
            and canonical_axis(p.axis, len(shapes[0])) == 1

    def lower(self, layer, shapes):
        from compiler.runtime.scale_bias import CaffeScale
        p = layer.param.scale_param
        _, operand = operand_geometry(p, shapes)
        module = CaffeScale(self.trailing(layer, shapes), operand, len(shapes) == 1, p.bias_term)
        if module.weight is not None and p.HasField("filler"):
            fill(module.weight.data, p.filler)
        if p.bias_term and p.HasField("bias_filler"):
            fill(module.bias.data, p.bias_filler)
        return module


class Bias(_Broadcast):
    type = "Bias"
    param_field = "bias_param"
    in_place = True
    dsl_name = "bias"
    blob_names = ("bias",)

    def blob_shapes(self, layer, shapes):
        return [operand_geometry(layer.param.bias_param, shapes)[1]] if len(shapes) == 1 else []

    def lower(self, layer, shapes):
        from compiler.runtime.scale_bias import CaffeBias
        p = layer.param.bias_param
        module = CaffeBias(self.trailing(layer, shapes),
                           operand_geometry(p, shapes)[1] if len(shapes) == 1 else None)
        if module.bias is not None and p.HasField("filler"):
            fill(module.bias.data, p.filler)
        return module


LAYERS = [Scale(), Bias()]

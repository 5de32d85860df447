"""Layers that reduce or normalise along an axis: Softmax, ArgMax, Reduction."""
import torch.nn as nn

from compiler.layers.base import LayerDef, canonical_axis


class Softmax(LayerDef):
    type = "Softmax"
    param_field = "softmax_param"

    def shape(self, layer, shapes):
        canonical_axis(layer.param.softmax_param.axis, len(shapes[0]))
        return [tuple(shapes[0])]

    def lower(self, layer, shapes):
        return nn.Softmax(dim=canonical_axis(layer.param.softmax_param.axis, len(shapes[0])))


LAYERS = [Softmax()]

"""Elementwise layers: the output has the bottom's shape and may be computed in place."""
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.base import LayerDef


class Elementwise(LayerDef):
    def shape(self, layer, shapes):
        return [tuple(shapes[0])]


class ReLU(Elementwise):
    type = "ReLU"
    param_field = "relu_param"

    def lower(self, layer, shapes):
        slope = layer.param.relu_param.negative_slope
        return nn.LeakyReLU(slope) if slope else nn.ReLU()


LAYERS = [ReLU()]

"""InnerProduct: a fully connected layer over the axes from `axis` on.

The input is flattened from `axis` (default 1) into K features; the output keeps the
axes before `axis` and adds num_output. The weight blob is (num_output, K), or (K,
num_output) with `transpose: true`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.base import LayerDef, ShapeError, canonical_axis, prod
from compiler.layers.fillers import fill


class InnerProduct(LayerDef):
    type = "InnerProduct"
    fresh_output = True
    param_field = "inner_product_param"
    blob_names = ("weight", "bias")
    dsl_name = "fc"
    dsl_positional = ("num_output",)
    dsl_abbreviations = {"bias": "bias_term"}
    conv_fc_macs = True
    draw_color = "#d9a3f5"

    def draw_label(self, layer):
        q = layer.param.inner_product_param
        return "%s out" % (q.num_output if q.HasField("num_output") else "?")

    def _dims(self, layer, shape):
        p = layer.param.inner_product_param
        if not p.HasField("num_output") or p.num_output <= 0:
            raise ShapeError("num_output must be set and positive")
        axis = canonical_axis(p.axis, len(shape))
        return p, axis, prod(shape[axis:])

    def shape(self, layer, shapes):
        p, axis, _ = self._dims(layer, shapes[0])
        return [tuple(shapes[0][:axis]) + (p.num_output,)]

    def blob_shapes(self, layer, shapes):
        p, _, k = self._dims(layer, shapes[0])
        w = (k, p.num_output) if p.transpose else (p.num_output, k)
        return [w, (p.num_output,)] if p.bias_term else [w]

    def macs(self, layer, shapes, out_shapes):
        p, axis, k = self._dims(layer, shapes[0])
        return prod(shapes[0][1:axis]) * k * p.num_output

    def lower(self, layer, shapes):
        p, axis, k = self._dims(layer, shapes[0])
        module = CaffeInnerProduct(k, p.num_output, axis, p.bias_term, p.transpose)
        if p.HasField("weight_filler"):
            fill(module.weight.data, p.weight_filler)
        if p.bias_term and p.HasField("bias_filler"):
            fill(module.bias.data, p.bias_filler)
        return module


class CaffeInnerProduct(nn.Module):
    """in_features (K, the axes from `axis` on) -> out_features. The blobs are zero until
    set, as Caffe's default fillers leave them."""

    def __init__(self, in_features, out_features, axis, bias, transpose):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.axis, self.transpose = axis, transpose
        self.weight = nn.Parameter(torch.zeros((in_features, out_features) if transpose
                                               else (out_features, in_features)))
        self.register_parameter("bias", nn.Parameter(torch.zeros(out_features)) if bias else None)

    def extra_repr(self):
        return "weight=%s, axis=%d%s" % (tuple(self.weight.shape), self.axis,
                                         ", transpose" if self.transpose else "")

    def forward(self, x):
        if x.dim() != self.axis + 1:
            x = x.flatten(self.axis)
        if self.transpose:
            y = torch.matmul(x, self.weight)
            return y + self.bias if self.bias is not None else y
        return F.linear(x, self.weight, self.bias)


LAYERS = [InnerProduct()]

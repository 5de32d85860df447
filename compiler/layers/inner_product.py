"""InnerProduct: a fully connected layer over the axes from `axis` on.

The input is flattened from `axis` (default 1) into K features; the output keeps the
axes before `axis` and adds num_output. The weight blob is (num_output, K), or (K,
num_output) with `transpose: true`.

K is fixed by the weights, so an input of another size than the net was built for (a
256x256 image into a net for 224x224) cannot work; the module says so, naming the layer
and both counts, instead of failing inside a matmul.
"""
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from compiler.errors import NetdefError
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
        module = CaffeInnerProduct(k, p.num_output, axis, p.bias_term, p.transpose, layer.name)
        if p.HasField("weight_filler"):
            fill(module.weight.data, p.weight_filler)
        if p.bias_term and p.HasField("bias_filler"):
            fill(module.bias.data, p.bias_filler)
        return module


@torch.fx.wrap
def flatten_checked(x, axis, k, layer):
    """x flattened from `axis` on into the `k` values per item the weights take; a
    NetdefError naming the layer if it holds another number. torch.fx.wrap keeps it one
    call in a symbolically traced graph, run on real shapes; torch.compile and export see
    a check of static sizes (a guard)."""
    count = prod(x.shape[axis:])
    if count != k:
        raise NetdefError(None, None, layer, "got an input of %d values per item (%s from axis %d on), but its "
                          "weights take %d" % (count, "x".join(str(d) for d in x.shape), axis, k),
                          "the weights fix the size of what reaches this layer: feed the input size "
                          "the net was built for")
    return x if x.dim() == axis + 1 else x.flatten(axis)


class CaffeInnerProduct(nn.Module):
    """in_features (K, the axes from `axis` on) -> out_features. The blobs are zero until
    set, as Caffe's default fillers leave them. `layer`, the Caffe layer's name, names it
    in the error for an input of another size."""

    def __init__(self, in_features, out_features, axis, bias, transpose, layer=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.axis, self.transpose, self.layer = axis, transpose, layer
        self.weight = nn.Parameter(torch.zeros((in_features, out_features) if transpose
                                               else (out_features, in_features)))
        self.register_parameter("bias", nn.Parameter(torch.zeros(out_features)) if bias else None)

    def extra_repr(self):
        return "weight=%s, axis=%d%s" % (tuple(self.weight.shape), self.axis,
                                         ", transpose" if self.transpose else "")

    def forward(self, x):
        x = flatten_checked(x, self.axis, self.in_features, self.layer)
        if self.transpose:
            y = torch.matmul(x, self.weight)
            return y + self.bias if self.bias is not None else y
        return F.linear(x, self.weight, self.bias)


LAYERS = [InnerProduct()]

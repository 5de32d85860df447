"""The module of InnerProduct (compiler/layers/inner_product.py)."""
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from compiler.errors import NetdefError
from compiler.layers.base import prod
from compiler.layers.fillers import zeros


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
        self.weight = nn.Parameter(zeros((in_features, out_features) if transpose
                                         else (out_features, in_features)))
        self.register_parameter("bias", nn.Parameter(zeros(out_features)) if bias else None)

    def extra_repr(self):
        return "weight=%s, axis=%d%s" % (tuple(self.weight.shape), self.axis,
                                         ", transpose" if self.transpose else "")

    def forward(self, x):
        x = flatten_checked(x, self.axis, self.in_features, self.layer)
        if self.transpose:
            y = torch.matmul(x, self.weight)
            return y + self.bias if self.bias is not None else y
        return F.linear(x, self.weight, self.bias)

"""The modules of Embed, BatchReindex and Parameter (compiler/layers/embedding.py)."""
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from compiler.errors import NetdefError
from compiler.layers.fillers import zeros


@torch.fx.wrap
def checked_indices(x, size, layer, integers, rows):
    """x's values as int64 indices (Caffe's static_cast<int>: toward zero) into `size`
    `rows`, with no gradient (Caffe gives indices none). A value outside [0, size) (or not
    an integer, where `integers`) stops the layer: Caffe CHECKs BatchReindex's indices, and
    Embed's in a debug build where a release build reads outside its table. The error is a
    NetdefError naming the layer and the first such value; in a graph that torch.compile or
    torch.export capture, where no value is known yet, a runtime assertion (torch._check).
    torch.fx.wrap keeps the function one call in a symbolically traced graph."""
    values = x.detach()
    index = values.to(torch.int64)
    bad = ~((values >= 0) & (values < size))    # NaN too
    if integers:
        bad = bad | (index.to(values.dtype) != values)
    if values.device.type == "meta":        # shapes only (netdef.training.memory): no values to check
        return index
    if torch.compiler.is_compiling():
        torch._check(torch.logical_not(bad.any()).item(),
                     lambda: "layer '%s': an index outside [0, %d), the %s" % (layer, size, rows))
        return index
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise NetdefError(None, None, layer, "index %r at position %s is %s [0, %d), the %s"
                          % (values[where].item(), list(where), "not an integer in" if integers else "outside",
                             size, rows), "feed indices in [0, %d)" % size)
    return index


class CaffeEmbed(nn.Module):
    """input_dim rows of num_output values; `layer`, the Caffe layer's name, names it in
    the error for an index outside the table. The blobs are zero until set, as Caffe's
    default fillers leave them."""

    def __init__(self, input_dim, num_output, bias, layer=None):
        super().__init__()
        self.input_dim, self.num_output, self.layer = input_dim, num_output, layer
        self.weight = nn.Parameter(zeros((input_dim, num_output)))
        self.register_parameter("bias", nn.Parameter(zeros(num_output)) if bias else None)

    def extra_repr(self):
        return "input_dim=%d, num_output=%d%s" % (self.input_dim, self.num_output,
                                                 "" if self.bias is not None else ", no bias")

    def forward(self, x):
        index = checked_indices(x, self.input_dim, self.layer, True, "rows of its table")
        top = F.embedding(index, self.weight)
        return top + self.bias if self.bias is not None else top


class CaffeBatchReindex(nn.Module):
    """The items of the data (axis 0) at the indices, in their order; `layer` names it in
    the error for an index outside the batch."""

    def __init__(self, layer=None):
        super().__init__()
        self.layer = layer

    def forward(self, data, indices):
        return data.index_select(0, checked_indices(indices, data.shape[0], self.layer, False,
                                                    "items of the batch"))


class CaffeParameter(nn.Module):
    """The blob `value`, of `shape`, as the top: gradients reaching the top reach it."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.value = nn.Parameter(zeros(self.shape))

    def extra_repr(self):
        return "shape=%s" % (self.shape,)

    def forward(self):
        return self.value

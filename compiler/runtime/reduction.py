"""The modules of ArgMax and Reduction (compiler/layers/reduction.py)."""
import torch
import torch.nn as nn


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

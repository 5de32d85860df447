"""Caffe's weight fillers (FillerParameter), for blobs that no caffemodel provides.

fill() and zeros() run only when a layer is lowered, so they import torch themselves: the
rest of compiler/layers (the filler names the checks use among it) stays importable
without torch.
"""
import math

# Caffe's filler names (GetFiller in filler.hpp), all implemented by fill().
FILLER_TYPES = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear")


def zeros(shape):
    """A float32 tensor of zeros, the value of Caffe's default filler (constant 0), in memory
    that the system hands over zeroed: numpy takes a large array's memory with calloc, whose
    pages are mapped only when first written. A blob that weights or a filler overwrite, or
    that nobody reads (`netdef compile` without weights), then costs no pass over memory;
    torch.zeros writes every byte (ResNet-152's 240 MB: 0.5 s idle, 2.5 s on the loaded
    machine, of a 3.5 s compile)."""
    import numpy as np
    import torch
    return torch.from_numpy(np.zeros(shape, np.float32))


def fill(tensor, filler):
    """Fill `tensor` in place the way Caffe's filler of this FillerParameter would."""
    import torch

    kind = filler.type if filler is not None else "constant"
    shape = tensor.shape
    fan_in = tensor.numel() // shape[0] if len(shape) > 0 and shape[0] else 1
    fan_out = tensor.numel() // shape[1] if len(shape) > 1 and shape[1] else 1
    with torch.no_grad():
        if kind == "constant":
            tensor.fill_(filler.value if filler is not None else 0.0)
        elif kind == "uniform":
            tensor.uniform_(filler.min, filler.max)
        elif kind == "gaussian":
            tensor.normal_(filler.mean, filler.std)
        elif kind in ("xavier", "msra"):
            n = {0: fan_in, 1: fan_out, 2: (fan_in + fan_out) / 2.0}[filler.variance_norm]
            if kind == "xavier":
                scale = math.sqrt(3.0 / n)
                tensor.uniform_(-scale, scale)
            else:
                tensor.normal_(0.0, math.sqrt(2.0 / n))
        elif kind == "positive_unitball":
            tensor.uniform_(0, 1)
            flat = tensor.view(shape[0], -1)
            flat.div_(flat.sum(dim=1, keepdim=True))
        elif kind == "bilinear":
            # Caffe's BilinearFiller: upsampling kernels for Deconvolution.
            k = shape[-1]
            f = math.ceil(k / 2.0)
            c = (2 * f - 1 - f % 2) / (2.0 * f)
            coords = torch.arange(k, dtype=torch.float64)
            w1 = 1 - torch.abs(coords / f - c)
            tensor.copy_((w1[:, None] * w1[None, :]).expand(shape).to(tensor.dtype))
        else:
            raise ValueError("unknown filler type %r" % kind)
    return tensor

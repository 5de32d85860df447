"""Devices and precisions for the verbs that compute (run, train, test, time, ...).

fp32 is Caffe's arithmetic and the default. bf16 and fp16 run the forward pass under
torch.autocast (matrix products and convolutions in the lower precision, reductions and
losses in float32); training with fp16 also scales the loss (netdef.training.solver).
"""
import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """A context manager running the forward pass of `device` in `precision`."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def place(module, device, channels_last=False):
    """Move a module to `device` (and its 4-D weights to channels_last) in place."""
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    return module

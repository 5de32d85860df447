"""Devices and precisions for the verbs that compute (run, train, test, time, ...).

fp32 is Caffe's arithmetic and the default. bf16 and fp16 run the forward pass under
torch.autocast (matrix products and convolutions in the lower precision, reductions and
losses in float32); training with fp16 also scales the loss (netdef.training.solver).
"""
import contextlib

import torch

from compiler.errors import NetdefError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_device(text):
    """'cpu', 'cuda' or 'cuda:N' -> torch.device, checked against the machine: a device that
    is not there is the user's error (one message, exit 1), not a CUDA traceback later."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise NetdefError("--device", None, None, "unknown device %r" % text,
                          "use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NetdefError("--device", None, None, "device %s: this machine has no CUDA device "
                              "(or this torch build has no CUDA)" % text, "use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise NetdefError("--device", None, None, "device %s: this machine has %d CUDA device(s), "
                              "numbered 0..%d" % (text, count, count - 1))
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        raise NetdefError("--device", None, None, "device %s is not supported" % text, "use cpu, cuda or cuda:N")
    return device


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


def place_inputs(inputs, device, channels_last=False):
    """{blob: tensor or array} -> {blob: float tensor on the device}; 4-d inputs in
    channels_last when asked (the layout convolutions then run in without copies)."""
    placed = {}
    for name, value in inputs.items():
        t = torch.as_tensor(value)
        if not t.is_floating_point():
            t = t.float()
        t = t.to(device, non_blocking=True)
        if channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        placed[name] = t
    return placed

"""Devices, precision and memory format for every verb that computes (train, test, time,
run). The CLI flags are defined once in netdef.commands.add_device_arguments; this module
gives them their meaning, so a Python user gets the same behaviour as the command line.

Precision follows PyTorch's automatic mixed precision rather than casting the module:
parameters and optimizer state stay fp32 (Caffe's solver arithmetic is fp32 and the
solver's update must stay Caffe's), and matmuls/convolutions run in the lower precision
inside `autocast`. fp16 has a narrow range, so training in it multiplies the loss before
backward and divides the gradients after (`grad_scaler`); bf16 has fp32's range and needs
no scaling."""
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
    """The context a forward pass runs in: nothing for fp32, torch.autocast otherwise."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device, precision):
    """A torch.amp.GradScaler that is active only for fp16: scale(loss) before backward,
    unscale_ the gradients before the solver's update (Caffe's update and clip_gradients see
    true gradients), and skip the update when they overflowed."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def place_module(module, device, channels_last=False):
    """Move a module's parameters and buffers to the device (and 4-d ones to channels_last)."""
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

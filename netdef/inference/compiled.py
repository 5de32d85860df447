"""The fastest exact inference netdef knows: the fast path compiled by torch.compile.

`netdef.load(..., compile=True)` (and `--compile` on `netdef run`) builds the inference fast
path (BatchNorm and Scale folded into the convolutions, channels_last weights) and compiles
it with inductor's `freezing`: the weights become constants of the compiled code, so inductor
folds what is left around them and prepacks the convolution weights once, at compile time.
The module is for inference only; a net for inference is what Caffe's TEST phase runs, and
training needs the parameters to stay parameters.

Compilation happens in `compile_for_inference`, on one warm-up batch of the net's input
shapes, so its cost is paid (and reported, `warmup_seconds`) before the first real batch,
and a failure (no C++ compiler, a layer torch.compile cannot trace) falls back there to the
eager fast path with one line saying why, never mid-run.

Batch sizes: the batch dimension of every input is marked dynamic at warm-up
(`torch._dynamo.maybe_mark_dynamic`), so one compiled program serves every batch size.
torch.compile treats a dimension of size 1 as a constant, so a net warmed up at batch 1
compiles once more, with a symbolic batch, the first time it sees another size; a net
warmed up at batch >= 2 compiles once more for batch 1. After that, nothing recompiles.

Precision: float32 by default, as Caffe computes. `precision="bf16"` (CPU with bf16 support,
or CUDA) and `"fp16"` (CUDA) run convolutions and matrix products under torch.autocast;
outputs are returned as float32. It is opt-in: the numbers then differ from Caffe's by
more than the golden tolerance.

On CUDA the compiled program is also captured as a CUDA graph (mode="reduce-overhead"),
which removes the per-kernel launch cost that dominates small batches. That path is not
tested on this project's CPU-only CI.
"""
import sys
import time

import torch
from torch import nn

from compiler.backends.record import record_of
from compiler.errors import NetdefError
from netdef.devices import PRECISIONS, autocast


class CompiledNet(nn.Module):
    """A compiled fast-path module. Called like the module it wraps (inputs by position or by
    Caffe blob name), it returns {Caffe blob name: float32 tensor}. `meta` is the wrapped
    module's, so `netdef.record(model)` gives its record (the folded net, names, weight
    report). `compiled` says whether torch.compile is in use; `fallback` is the reason when
    it is not, `warmup_seconds` what compiling (or trying to) cost.

    With freezing, the weights are constants of the compiled program: changing the
    parameters of `module` afterwards, or moving it to another device, does not change what
    the compiled program computes. Load weights before compiling."""

    def __init__(self, module, device, precision):
        super().__init__()
        self.module = module
        self.meta = module.meta
        self.device_type = device.type
        self.precision = precision
        self.compiled = False
        self.fallback = None
        self.warmup_seconds = 0.0
        self.training = False
        # Kept out of the submodules: the compiled callable wraps `module`, and registering it
        # too would list every parameter twice in state_dict().
        self.__dict__["_run"] = module

    def forward(self, *args, **kwargs):
        args = [self._prepare(a) for a in args]
        kwargs = {k: self._prepare(v) for k, v in kwargs.items()}
        if self.compiled and self.device_type == "cuda":
            # A CUDA graph replays into the same output memory; a new step lets the previous
            # outputs be overwritten, so they are cloned below before that happens.
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad(), autocast(self.device_type, self.precision):
            out = self._run(*args, **kwargs)
        # Caffe's blobs are float32; on CUDA a copy, since the graph's output memory is reused.
        copy = self.compiled and self.device_type == "cuda"
        return {k: v.to(torch.float32, copy=copy) for k, v in out.items()}

    def _prepare(self, x):
        """Inputs in the layout the compiled program was specialized to: 4-D tensors
        channels_last (the layout the fast path's convolutions compute in), so that a caller's
        contiguous or channels_last batch both run without recompiling."""
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def train(self, mode=True):
        if mode:
            raise NetdefError(None, None, None, "a compiled module is for inference only; "
                              "build the module without compile=True to train it")
        return super().train(False)


def compile_for_inference(gm, precision="fp32", log=None):
    """A fast-path GraphModule (eval mode, weights loaded) -> CompiledNet, compiled and warmed
    up on zeros of the shapes in its record's net (their batch dimension dynamic). `log`
    receives the one line reporting the warm-up time or the fallback (default: stderr)."""
    if log is None:
        def log(line):
            print(line, file=sys.stderr, flush=True)
    if precision not in PRECISIONS:
        raise NetdefError(None, None, None, "unknown precision %r (one of %s)"
                          % (precision, ", ".join(PRECISIONS)))
    record = record_of(gm)
    if record.net.phase != "TEST":
        raise NetdefError(record.net.file, None, None, "compile=True is for inference: the net "
                          "is in phase %s" % record.net.phase, hint="load it with phase='TEST'")
    device = next(iter(gm.state_dict().values()), torch.empty(0)).device
    if precision == "fp16" and device.type != "cuda":
        raise NetdefError(None, None, None, "precision fp16 needs a CUDA device; on a CPU use bf16")
    gm.eval()
    model = CompiledNet(gm, device, precision)
    # Marked after _prepare: a layout change makes a new tensor, which would lose the mark.
    example = [model._prepare(torch.zeros(record.net.blobs[t].shape, device=device))
               for t in record.net.inputs]
    for x in example:
        if x.dim() and x.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(x, 0)
    options = {"freezing": True}
    if device.type == "cuda":
        # CUDA graphs: what mode="reduce-overhead" sets (torch.compile takes a mode or options,
        # not both).
        options["triton.cudagraphs"] = True
    start = time.perf_counter()
    try:
        model.__dict__["_run"] = torch.compile(gm, options=options)
        model.compiled = True
        model(*example)
    except Exception as e:       # any failure of torch.compile's machinery: run eagerly instead
        model.__dict__["_run"] = gm
        model.compiled = False
        model(*example)          # an error of the net itself is raised here, not hidden
        model.fallback = _one_line(e)
        log("netdef: torch.compile failed (%s); running the eager fast path" % model.fallback)
    else:
        model.warmup_seconds = time.perf_counter() - start
        log("netdef: compiled %s in %.1f s (torch.compile, inductor freezing, %s, dynamic batch)"
            % (record.net.name or "the net", model.warmup_seconds, precision))
    return model


def _one_line(error):
    """The innermost cause of a compile failure in one line: `Type: first line of its message`,
    and, for torch.compile's structured errors, their `Explanation:` line, whose end names
    what failed. Long texts keep their start and that end."""
    while True:
        inner = getattr(error, "inner_exception", None) or error.__cause__ or \
            (None if error.__suppress_context__ else error.__context__)
        if inner is None:
            break
        error = inner
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = type(error).__name__ + (": " + lines[0] if lines else "")
    explanation = [line for line in lines if line.startswith("Explanation:")]
    if explanation:
        text += " (" + explanation[0][len("Explanation:"):].strip() + ")"
    return text if len(text) <= 300 else text[:120] + " ... " + text[-175:]

"""The fastest exact inference netdef knows: the fast path compiled by torch.compile.

`netdef.load(..., compile=True)` (and `--compile` on `netdef run`) builds the inference fast
path (BatchNorm and Scale folded into the convolutions, channels_last weights) and compiles
it with inductor's `freezing`: the weights become constants of the compiled code, so inductor
folds what is left around them and prepacks the convolution weights once, at compile time
(oneDNN convolutions with the ReLU and residual sum fused in). The module is for inference
only; a net for inference is what Caffe's TEST phase runs, and training needs the parameters
to stay parameters.

Freezing is switched on with `torch._inductor.config.patch(freezing=True)` around every call
of the compiled program, not with `torch.compile(options={"freezing": True})`: dynamo decides
while it traces whether parameters become constants, and it reads the process-wide inductor
config for that, not the options given to the backend. With the options alone, inductor runs
its freezing pass on a graph whose weights are still inputs, so nothing is frozen or
prepacked (measured: ResNet-50 then runs at the speed of plain torch.compile). The patch
lasts for the call only, so other torch.compile users in the process are not affected.

Compilation happens in `compile_for_inference`, on warm-up batches, so its cost is paid (and
reported, `warmup_seconds`) before the first real batch, and a failure (no C++ compiler, a
layer torch.compile cannot trace) falls back there to the eager fast path with one line
saying why, never mid-run.

Batch sizes: the warm-up shapes get a program specialized to them, whose convolution weights
are prepacked for those shapes (inductor prepacks only for static input shapes: with a
symbolic batch it repacks the weights in every call, which costs ResNet-50 about a quarter of
its speed). Any other batch size runs a second program whose batch dimension is dynamic
(`torch._dynamo.maybe_mark_dynamic`), warmed up too, on a batch one larger, and serves every
other batch size (torch.compile treats a size of 1 as a constant, so batch 1, if it comes,
compiles once more). The two are separate torch.compile wrappers so that the warm-up shapes
keep their program after other sizes were seen. Should that second compile fail, other batch
sizes run the eager fast path, said in one line at load time. The second warm-up costs
ResNet-50 about 4 s and GoogLeNet about 17 s more (benchmarks/bench_compile.py).

Precision: float32 by default, as Caffe computes. `precision="bf16"` (CPU with bf16 support,
or CUDA) and `"fp16"` (CUDA) run convolutions and matrix products under torch.autocast;
outputs are returned as float32. It is opt-in: the numbers then differ from Caffe's by
more than the golden tolerance.

On CUDA the compiled programs are also captured as CUDA graphs (mode="reduce-overhead"),
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

    def __init__(self, module, device, precision, log):
        super().__init__()
        self.module = module
        self.meta = module.meta
        self.device_type = device.type
        self.precision = precision
        self.compiled = False
        self.fallback = None
        self.warmup_seconds = 0.0
        self.training = False
        self._log = log
        self._warmup_shapes = None
        # Kept out of the submodules: the compiled callables wrap `module`, and registering
        # them too would list every parameter twice in state_dict().
        self.__dict__["_static"] = module
        self.__dict__["_dynamic"] = None

    def forward(self, *args, **kwargs):
        args = [self._prepare(a) for a in args]
        kwargs = {k: self._prepare(v) for k, v in kwargs.items()}
        shapes = [tuple(t.shape) for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
        if not self.compiled or shapes == self._warmup_shapes:
            out = self._call(self._static, args, kwargs)
        else:
            out = self._call(self._dynamic, *_batch_dynamic(args, kwargs))
        # Caffe's blobs are float32; on CUDA a copy, since the graph's output memory is reused.
        copy = self.compiled and self.device_type == "cuda"
        return {k: v.to(torch.float32, copy=copy) for k, v in out.items()}

    def _call(self, program, args, kwargs):
        # Imported here: inductor's config imports sympy, a third of a second that `import
        # netdef` does not pay for modules that are never compiled.
        import torch._inductor.config
        if self.compiled and self.device_type == "cuda":
            # A CUDA graph replays into the same output memory; a new step lets the previous
            # outputs be overwritten, so they are copied in forward() before that happens.
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad(), autocast(self.device_type, self.precision), \
                torch._inductor.config.patch(freezing=True):
            return program(*args, **kwargs)

    def _compile_dynamic(self, example):
        """Compile the batch-dynamic program on `example` (inputs of another batch size than
        the warm-up's). Where that fails, other batch sizes run the eager fast path: returns
        the failure in one line, else None."""
        self.__dict__["_dynamic"] = torch.compile(self.module, options=_options(self.device_type))
        try:
            self._call(self._dynamic, *_batch_dynamic([self._prepare(x) for x in example], {}))
        except Exception as e:   # as in compile_for_inference: the static program ran this net
            self.__dict__["_dynamic"] = self.module
            return _one_line(e)
        return None

    def _prepare(self, x):
        """Inputs in the layout the compiled programs were specialized to: 4-D tensors
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
    up on zeros of the shapes in its record's net (its static program) and of a batch one
    larger (the batch-dynamic program for every other size). `log` receives the line
    reporting the warm-up time or the fallback (default: stderr)."""
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
    model = CompiledNet(gm, device, precision, log)
    example = [torch.zeros(record.net.blobs[t].shape, device=device) for t in record.net.inputs]
    start = time.perf_counter()
    try:
        model.__dict__["_static"] = torch.compile(gm, dynamic=False, options=_options(device.type))
        model.compiled = True
        model._warmup_shapes = [tuple(x.shape) for x in example]
        model(*example)
    except Exception as e:       # any failure of torch.compile's machinery: run eagerly instead
        model.__dict__["_static"] = gm
        model.compiled = False
        model(*example)          # an error of the net itself is raised here, not hidden
        model.fallback = _one_line(e)
        log("netdef: torch.compile failed (%s); running the eager fast path" % model.fallback)
    else:
        failed = model._compile_dynamic([torch.zeros((x.shape[0] + 1,) + x.shape[1:], device=device)
                                         if x.dim() else x for x in example])
        model.warmup_seconds = time.perf_counter() - start
        log("netdef: compiled %s in %.1f s (torch.compile, inductor freezing, %s; batch shapes %s, "
            "and a batch-dynamic program for other sizes)"
            % (_name(model), model.warmup_seconds, precision, _shapes_text(example)))
        if failed:
            log("netdef: torch.compile failed for other batch sizes (%s); they run the eager fast path"
                % failed)
    return model


def _batch_dynamic(args, kwargs):
    """(args, kwargs) with the batch dimension of their tensors marked dynamic. Marked after
    CompiledNet._prepare: a layout change makes a new tensor, which would lose the mark."""
    for x in list(args) + list(kwargs.values()):
        if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(x, 0)
    return args, kwargs


def _options(device_type):
    """inductor's options for a compiled program (freezing is not among them: see the module
    docstring). On CUDA, CUDA graphs: what mode="reduce-overhead" sets (torch.compile takes a
    mode or options, not both)."""
    return {"triton.cudagraphs": True} if device_type == "cuda" else None


def _name(model):
    return record_of(model.module).net.name or "the net"


def _shapes_text(tensors):
    return ", ".join("x".join(map(str, t.shape)) for t in tensors)


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

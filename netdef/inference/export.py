"""A compiled module -> the files it runs from elsewhere: ONNX, safetensors, a standalone
Python file, TorchScript. (Caffe's own prototxt + caffemodel are netdef.export.)

Every function takes a module netdef built (its record says the net, the Caffe names of
its layers, inputs and outputs) and writes one file; `netdef export` calls them.
"""
import inspect
import json
import math
import operator
import sys
import types
import warnings

import numpy as np
import torch
import torch.nn as nn

from compiler.backends import torch_fx
from compiler.backends.record import record_of
from compiler.backends.torch_weights import net_blob_slots
from compiler.errors import NetdefError
from compiler.frontends.safetensors_file import FORMAT_STAMP, blob_key, safetensors_package
from compiler.layers.base import constructor_args
from compiler.runtime.normalization import batch_norm_scale


def example_inputs(gm, seed=0):
    """One random tensor per input blob, in the shapes the net was shaped with."""
    rec = record_of(gm)
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(rec.net.shape(name), generator=generator) for name in rec.input_names)


# --- safetensors --------------------------------------------------------------------------

def blob_arrays(gm):
    """({"LAYER/I": float32 array in Caffe's shape}, {key: key of the layer it shares with})
    from the module's current values; a shared blob (param { name }) is stored once, under
    the first layer that has it."""
    rec = record_of(gm)
    arrays, shared, owners = {}, {}, {}
    for layer, slots in net_blob_slots(rec.net, gm):
        specs = list(layer.param.param)
        for i, (_, tensor, shape) in enumerate(slots):
            key = blob_key(layer.name, i)
            name = specs[i].name if i < len(specs) else ""
            if name and name in owners:
                shared[key] = owners[name]
                continue
            if name:
                owners[name] = key
            arrays[key] = np.ascontiguousarray(tensor.detach().cpu().to(torch.float32).numpy().reshape(shape))
    return arrays, shared


def write_safetensors(gm, path):
    """The module's blobs as a safetensors file (compiler/frontends/safetensors_file.py says
    the layout), with the format stamp and the shared keys in its metadata."""
    safetensors = safetensors_package(path)
    arrays, shared = blob_arrays(gm)
    safetensors.numpy.save_file(arrays, str(path), metadata={"format": FORMAT_STAMP, "shared": json.dumps(shared),
                                                             "net": record_of(gm).net.name or ""})


# --- ONNX ---------------------------------------------------------------------------------

def write_onnx(gm, path):
    """The module as an ONNX model (torch.onnx's dynamo exporter) with the Caffe names of
    its inputs and outputs, for an input of the shapes the net declares. A layer that
    cannot be captured (DetectionOutput) stops it with a NetdefError naming the layer."""
    rec = record_of(gm)
    was_training = gm.training
    gm.eval()
    try:
        program = torch.onnx.export(gm, example_inputs(gm), dynamo=True, input_names=list(rec.input_names),
                                    output_names=list(rec.output_names), verbose=False)
    finally:
        gm.train(was_training)
    program.save(str(path))


# --- TorchScript --------------------------------------------------------------------------

def write_torchscript(gm, path):
    """The module scripted (torch.jit.script) and saved. A layer whose module TorchScript
    cannot compile is named, with the exporters that take any traceable module instead."""
    rec = record_of(gm)
    for modname, module in gm.named_children():
        try:
            with warnings.catch_warnings():
                # Each probe would repeat PyTorch's deprecation notice; the last call shows it once.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.script(module)
        except Exception as e:    # TorchScript reports unsupported Python in many exception types
            layer = rec.net.layer(rec.layer_names[modname])
            raise NetdefError(layer.file, layer.line, layer.name,
                              "%s (%s) cannot be compiled to TorchScript: %s"
                              % (layer.type, type(module).__name__, _first_line(e)),
                              "export with --onnx, or capture the module with torch.export.export; "
                              "TorchScript is in maintenance in PyTorch") from None
    try:
        scripted = torch.jit.script(gm)
    except Exception as e:
        raise NetdefError(rec.net.file, None, None, "the net cannot be compiled to TorchScript: %s"
                          % _first_line(e), "export with --onnx, or use torch.export.export") from None
    scripted.save(str(path))


def _first_line(e):
    """The sentence of a TorchScript error that says what is wrong (its first line is
    often the signature of the function it was compiling)."""
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    return next((l for l in lines if not l.endswith(":")), lines[0] if lines else type(e).__name__)


# --- a standalone Python file -------------------------------------------------------------

# How the written file imports the modules the layers' code uses, by the module object.
_IMPORTS = {"torch": "import torch", "torch.nn": "import torch.nn as nn",
            "torch.nn.functional": "import torch.nn.functional as F", "math": "import math",
            "numpy": "import numpy as np", "struct": "import struct"}


def python_source(gm, weights_file):
    """The text of a Python file that defines the module as a person would write it: the
    layers as named submodules built with their constructor arguments, a forward that calls
    them in the net's order on variables named after the Caffe blobs, and `load()`, which
    builds it and reads the weights from `weights_file` (an .npz of LAYER/I arrays, beside
    the file). It imports torch and numpy, never netdef: the code of netdef's own layer
    modules, and of the helpers they call, is written into the file."""
    rec = record_of(gm)
    net = rec.net
    children = dict(gm.named_children())
    calls, names = _forward_calls(gm, rec)
    used = [m for m in dict.fromkeys(m for call in calls for m in call[0]) if m in children]
    writer = _CodeWriter()
    for modname in used:
        writer.need_class(type(children[modname]))
    class_name = torch_fx.python_name(net.name or "Net", set())
    lines = ['"""%s: written by netdef export from %s. It needs torch and numpy only.' % (
        net.name or "net", net.file or "a net"), "",
        "    model = load()              # the module, in eval mode, with its weights",
        "    outputs = model(%s)   # {Caffe blob name: tensor}" % ", ".join(
            torch_fx.python_name(n, set()) for n in rec.input_names), '"""']
    lines += sorted(writer.imports | {"from pathlib import Path", "import numpy as np", "import torch",
                                       "import torch.nn as nn"}, key=lambda s: (s.startswith("from"), s))
    lines += ["", 'WEIGHTS = %r' % weights_file]
    lines += writer.definitions()
    lines += ["", "", "class %s(nn.Module):" % class_name, "    def __init__(self):",
              "        super().__init__()"]
    for modname in used:
        lines.append("        self.%s = %s  # %s" % (modname, _constructor_call(children[modname]),
                                                     _layer_comment(net, rec.layer_names[modname])))
    ties = _shared_ties(gm, used)
    if ties:
        lines.append("        # Blobs Caffe shares between layers (param { name: ... }): one tensor.")
        lines += ["        self.%s = self.%s" % tie for tie in ties]
    lines += ["", "    def forward(self, %s):" % ", ".join(names[n] for n in rec.input_names)]
    for targets, outs, args in calls:
        assign = ", ".join(outs) + " = " if outs else ""
        lines.append("        %sself.%s(%s)" % (assign, targets[0], ", ".join(args)))
        for target in targets[1:]:
            lines.append("        %sself.%s(%s)" % (assign, target, ", ".join(outs)))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    lines.append("        return {%s}" % ", ".join("%r: %s" % (k, names[v]) for k, v in output.args[0].items()))
    lines += ["", "", "# Caffe's blobs (the weights file's keys, LAYER/INDEX) -> this module's tensors.",
              "BLOBS = {"]
    lines += ["    %r: (%r, %r)," % entry for entry in _blob_table(gm, rec, set(used))]
    lines += ["}", "", "",
              "def load(weights=None, device=\"cpu\"):",
              '    """The module with the weights of `weights` (default: WEIGHTS beside this file), in',
              '    eval mode (Caffe\'s TEST phase)."""',
              "    model = %s()" % class_name,
              "    path = Path(weights) if weights else Path(__file__).with_name(WEIGHTS)",
              "    with np.load(path, allow_pickle=False) as arrays, torch.no_grad():",
              "        for key, (module, attr) in BLOBS.items():",
              "            tensor = getattr(getattr(model, module), attr)",
              "            tensor.copy_(torch.from_numpy(arrays[key]).reshape(tensor.shape))",
              "    return model.to(device).eval()", ""]
    return "\n".join(lines)


def _layer_comment(net, layer_name):
    layer = net.layer(layer_name)
    shown = "" if torch_fx.python_name(layer_name, set()) == layer_name else "%s, " % layer_name
    return "%s%s -> %s" % (shown, layer.type, ", ".join(
        "x".join(map(str, net.blobs[t].shape)) for t in layer.tops))


def _forward_calls(gm, rec):
    """[(submodule names, output variables, argument variables)] in the graph's order, and
    {node or Caffe input name: variable}. A variable is named after its Caffe blob; a blob
    written in place (conv1 -> relu1) keeps its name, as in hand-written code, unless its
    older value is still read later (then the new value gets a suffix)."""
    net = rec.net
    nodes = list(gm.graph.nodes)
    last_use = {}
    for i, node in enumerate(nodes):
        for arg in node.all_input_nodes:
            last_use[arg] = i
    names, bound, calls = {}, {}, []     # bound: variable -> node holding it

    def variable(node, blob, i):
        base = torch_fx.python_name(blob, {"self"})
        var, k = base, 1
        while var in bound and last_use.get(bound[var], -1) > i:
            k += 1
            var = "%s_%d" % (base, k)
        bound[var] = node
        names[node] = var
        return var

    placeholders = [n for n in nodes if n.op == "placeholder"]
    for node, name in zip(placeholders, rec.input_names):
        names[name] = variable(node, name, -1)
    for i, node in enumerate(nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module":
            layer = net.layer(rec.layer_names[node.target])
            targets, args = [node.target], [names[a] for a in node.args]
        elif node.target is batch_norm_scale:
            # BatchNorm then Scale, which the backend runs as one call: two calls here.
            bn, scale = node.args[1].target, node.args[2].target
            layer = net.layer(rec.layer_names[scale])
            targets, args = [bn, scale], [names[node.args[0]]]
        elif node.target is operator.getitem:
            continue      # unpacked where the layer is called
        elif node.target is torch_fx.refuse_capture:
            names[node] = names[node.args[0]]
            continue
        else:
            raise NetdefError(net.file, None, None, "netdef cannot write the graph node %s as Python" % node.format_node())
        users = [u for u in node.users if u.op == "call_function" and u.target is operator.getitem]
        if len(layer.tops) > 1:
            outs = []
            for k, t in enumerate(layer.tops):
                holder = next((u for u in users if u.args[1] == k), None)
                outs.append(variable(holder, net.blobs[t].name, i) if holder is not None else "_")
        else:
            outs = [variable(node, net.blobs[t].name, i) for t in layer.tops]     # none: Silence
        calls.append((targets, outs, args))
    return calls, names


def _constructor_call(module):
    """"nn.Conv2d(3, 20, kernel_size=(5, 5))": the class and the arguments that differ
    from their defaults (all of them for netdef's classes, whose code is in the file)."""
    args = constructor_args(module)
    params = inspect.signature(type(module)).parameters
    shown = []
    for name, value in args.items():
        default = params[name].default
        if default is not inspect.Parameter.empty and _same(default, value):
            continue
        shown.append("%s=%s" % (name, _literal(value)))
    cls = type(module)
    prefix = "nn." if cls.__module__.startswith("torch.nn") and getattr(nn, cls.__name__, None) is cls else ""
    return "%s%s(%s)" % (prefix, cls.__name__, ", ".join(shown))


def _same(default, value):
    """The value is the default: equal, or a tuple of the default int, which torch.nn's
    convolutions and pools read as that int for every axis (stride=1 is stride=(1, 1))."""
    if isinstance(default, int) and isinstance(value, tuple) and value and all(v == default for v in value):
        return True
    try:
        return type(default) is type(value) and bool(default == value)
    except Exception:
        return False


def _literal(value):
    """Python source for a constructor argument: numbers (inf and nan included), strings,
    bools, None, and tuples and lists of them."""
    if isinstance(value, float) and not math.isfinite(value):
        return 'float("%s")' % value
    if isinstance(value, tuple):
        return "(%s)" % "".join(_literal(v) + ", " for v in value).rstrip(" ") if len(value) == 1 \
            else "(%s)" % ", ".join(_literal(v) for v in value)
    if isinstance(value, list):
        return "[%s]" % ", ".join(_literal(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError("constructor argument %r is not a plain Python value" % (value,))


def _shared_ties(gm, used):
    """[(module.attr, earlier module.attr)] for parameters that one tensor fills in several
    layers."""
    first, ties = {}, []
    for modname in used:
        for attr, p in gm.get_submodule(modname).named_parameters(recurse=False):
            here = "%s.%s" % (modname, attr)
            if id(p) in first:
                ties.append((here, first[id(p)]))
            else:
                first[id(p)] = here
    return ties


def _blob_table(gm, rec, used):
    """[(LAYER/I key, submodule, attribute)] for the blobs the weights file stores (a shared
    blob under its first layer only)."""
    inverse = {caffe: mod for mod, caffe in rec.layer_names.items()}
    _, shared = blob_arrays(gm)
    table = []
    for layer, slots in net_blob_slots(rec.net, gm):
        modname = inverse[layer.name]
        for i, (attr, _, _) in enumerate(slots):
            key = blob_key(layer.name, i)
            if key not in shared and modname in used:
                table.append((key, modname, attr))
    return table


class _CodeWriter:
    """Collects the source of netdef's module classes a net uses and of the module-level
    names their code reads (helpers, constants), each once, dependencies first."""

    def __init__(self):
        self.imports = set()
        self.done = set()
        self.blocks = []

    def need_class(self, cls):
        if cls in self.done or not _ours(cls):
            return
        self.done.add(cls)
        for base in cls.__bases__:
            self.need_class(base)
        self._need_globals(cls, _class_names(cls))
        self.blocks.append(inspect.getsource(cls).rstrip())

    def _need_globals(self, owner, names):
        module_globals = sys.modules[owner.__module__].__dict__
        for name in sorted(names):
            if name not in module_globals:
                continue            # a builtin, an attribute or a local
            value = module_globals[name]
            if isinstance(value, types.ModuleType):
                self.imports.add(_IMPORTS.get(value.__name__, "import %s as %s" % (value.__name__, name)
                                              if value.__name__ != name else "import %s" % name))
            elif isinstance(value, type) and _ours(value):
                self.need_class(value)
            elif isinstance(value, types.FunctionType):
                if _ours(value):
                    if value not in self.done:
                        self.done.add(value)
                        self._need_globals(value, _code_names(value.__code__))
                        self.blocks.append(inspect.getsource(value).rstrip())
                else:
                    self.imports.add("from %s import %s" % (value.__module__, name))
            elif isinstance(value, (int, float, str, tuple)) and name not in self.done:
                self.done.add(name)
                self.blocks.append("%s = %s" % (name, _literal(value)))
            elif callable(value) and value.__module__ != "builtins":
                self.imports.add("from %s import %s" % (value.__module__, name))

    def definitions(self):
        out = []
        for block in self.blocks:
            out += ["", ""] if "\n" in block or block.startswith(("def ", "class ")) else [""]
            out.append(block)
        return out


def _ours(obj):
    """Defined by netdef (its source goes into the file), not imported from a library."""
    return obj.__module__.split(".")[0] in ("compiler", "netdef")


def _class_names(cls):
    names = set()
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            value = value.fget
        if isinstance(value, types.FunctionType):
            names |= _code_names(value.__code__)
    return names


def _code_names(code):
    """The global names a function's code (and the code of functions it defines) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names

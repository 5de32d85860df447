"""What a layer type is: one LayerDef subclass per Caffe type, registered by type name.

A LayerDef holds everything netdef knows about one layer type, in one place:
- `param_field`: the LayerParameter field with its parameters (Caffe's defaults come from
  the schema, so reading `layer.param.<field>` gives the value Caffe would use);
- `is_input`: its tops are the net's inputs, placeholders of the module;
- `auto_top`: a layer written without tops gets anonymous ones (Caffe's AutoTopBlobs);
- `fresh_output`: its module returns a new tensor that its own backward does not read, so
  the backend may let a later layer overwrite it (in-place ReLU and sums);
- `shape()`: Caffe's output shape rule, raising ShapeError with a hint when it cannot apply;
- `blob_shapes()`: the learnable blobs Caffe creates (their order is the caffemodel's);
- `macs()`: multiply-accumulates per item of the batch;
- `workspace_values()`: the temporaries its module allocates while it runs (counted in
  the memory budget);
- `lower()`: a torch.nn.Module computing what Caffe computes. Its forward takes the bottoms
  and returns the top (or a tuple of tops); its blobs are attributes named `blob_names`.
  The built-in types' module classes are in compiler/runtime, which `lower()` imports, so
  that everything else here (reading, checking, summarising, drawing) runs without torch;
- `in_place_bottom()`, `lower_in_place()`: which bottom nobody else sees its module may
  compute into, and the module doing so (the backend builds it, the training-memory
  count follows it);
- `declare_shapes()`: how a written net records the shapes its tops were given;
- `in_place`, `aliases_bottom`: how the type treats its blobs (see the attributes);
- `dsl_name`, `dsl_positional`, `dsl_abbreviations`: how the netdef language calls it;
- `conv_fc_macs`, `draw_color`, `draw_label()`: how the summary and the drawings show it;
- `export_refusal`: why its module cannot be exported, if it cannot.
Every stage asks the definition, never a table of type names, so a type a user registers
is read, checked, summarised, drawn, converted and run like a built-in one.
Prototxt emission needs nothing per layer: the IR keeps each layer's LayerParameter.

The modules `lower()` returns are plain PyTorch, so that they pickle (torch.save), move,
compile and export like any module, and a code generator can write them out:
- they compute with torch only and hold tensors and Python values, never a protobuf
  message (an enum is held by its Caffe name, "SUM"; fillers are applied by `lower()`);
- their constructor takes plain Python values (numbers, strings, bools, None, tuples and
  lists of them) and keeps each one as the attribute of the same name, the convention
  torch.nn's own modules follow (nn.Conv2d keeps in_channels, kernel_size, ...); an
  argument named after a parameter or buffer (nn.Conv2d's `bias`) says whether the module
  has it; their tensors are their state_dict. `constructor_args(module)` reads these back,
  the same way for netdef's modules and torch.nn's: `type(m)(**constructor_args(m))`
  followed by `load_state_dict(m.state_dict())` rebuilds `m`;
- a buffer that holds a process's own state rather than one the processes share (RNN's
  and LSTM's carried states, each GPU's own in Caffe, where BatchNorm's statistics are
  the root's) is named in the module's `per_process_buffers`; training under torchrun
  keeps those out of the broadcast of rank 0's buffers.

Caffe's registry (LayerRegistry / REGISTER_LAYER_CLASS) is the model: small and explicit.
"""
import inspect

from compiler.proto import is_repeated


class ShapeError(Exception):
    """A layer's shape rule cannot apply; the shapes pass adds the location."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class LayerDef:
    type = None                 # Caffe type string, e.g. "Convolution"
    param_field = None          # e.g. "convolution_param"
    blob_names = ()             # attribute names of the learnable blobs, in Caffe order
    bottoms = (1, 1)            # (min, max) bottom count; max None = any
    tops = (1, 1)
    # A layer whose tops are the net's inputs (Input, the data layers): the module takes
    # them as arguments instead of computing them.
    is_input = False
    # The lowered module's top is a newly allocated tensor that its own backward does not
    # read (Convolution, InnerProduct, BatchNorm, Scale, Eltwise): a ReLU or a sum may then
    # write into it when nothing else sees it. Views (Split, Slice, Reshape, Dropout in TEST)
    # and layers whose backward reads their output (Sigmoid, TanH, Exp, Softmax) may not.
    fresh_output = False
    # Caffe's AutoTopBlobs: written without tops, the layer still gets its minimum number
    # of tops, anonymous blobs no other layer can read (a loss layer's loss is still
    # computed and counted in the net's loss; Caffe names them "(automatic)").
    auto_top = False
    # Indices of blobs holding statistics rather than learned weights (BatchNorm's mean,
    # variance and factor): not counted as parameters, never updated by a solver.
    stat_blobs = ()
    # Caffe nets write this type onto its bottom (top = bottom: ReLU, BatchNorm, Scale,
    # Dropout, ...). The netdef language's `x -> relu` then rewrites x, and its writer
    # folds such a layer into the chain of the layer before it.
    in_place = False
    # The tops share the bottom's memory instead of holding copies (Caffe's Split): an
    # in-place layer on one top rewrites them all, which the wiring pass models.
    aliases_bottom = False
    # The netdef language's name for the type ("conv"); None: it is called by its type
    # name. `dsl_positional`: fields of `param_field` given by position after the blobs,
    # conv(64, 3, 1, 1); `dsl_abbreviations`: keyword -> field, conv(64, k=3, s=2).
    dsl_name = None
    dsl_positional = ()
    dsl_abbreviations = {}
    # Its MACs are among those the classic papers count (convolutions and fully connected
    # layers): the summary's "conv/fc" total, which derived-facts.json compares with.
    conv_fc_macs = False
    # The fill colour of its box in drawings (None: the default colour).
    draw_color = None
    # Why torch.export / ONNX cannot capture the lowered module (DetectionOutput: its
    # output size depends on the data), or None. The backend then refuses such a capture
    # with a NetdefError naming the layer and the outputs to export instead.
    export_refusal = None

    def params(self, layer):
        return getattr(layer.param, self.param_field) if self.param_field else None

    def shape(self, layer, shapes):
        raise NotImplementedError

    def blob_shapes(self, layer, shapes):
        return []

    def blob_attrs(self, layer, shapes):
        """Attribute names of the lowered module's blobs, in Caffe's blob order."""
        return self.blob_names[:len(self.blob_shapes(layer, shapes))]

    def macs(self, layer, shapes, out_shapes):
        """Multiply-accumulates for one item of the batch (axis 0)."""
        return 0

    def workspace_values(self, layer, shapes):
        """How many float32 values of temporaries the lowered module allocates while it
        runs, beyond its tops and blobs (LRN's padded squares). They are freed when it returns, so the
        memory budget adds the largest of them to the activations; a parameter that makes
        them huge is then refused before anything is allocated, as a huge top is."""
        return 0

    def backward_values(self, layer, shapes, out_shapes):
        """How many float32-sized values the lowered module keeps for its backward pass
        in training beyond the net's blobs (max pooling's int64 indices), for the memory
        of a training step (accounting.training_step_bytes)."""
        return 0

    def lower(self, layer, shapes):
        raise NotImplementedError("%s has no PyTorch lowering" % self.type)

    def in_place_bottom(self, layer, private):
        """The index of the bottom the lowered module computes into, chosen among
        `private` (the indices of fresh tensors no one else reads or sees returned:
        accounting.private_fresh_bottoms), as ReLU(inplace=True) and `out += identity` do
        in hand-written models; None (the default): it allocates its top."""
        return None

    def lower_in_place(self, layer, module, index):
        """The module `lower` made, changed to compute into bottom `index` (what
        in_place_bottom chose)."""
        raise NotImplementedError("%s computes into no bottom" % self.type)

    def declare_shapes(self, param, shapes):
        """Write `shapes`, the shapes the net was shaped with, into `param` (a copy of the
        layer's LayerParameter) where the type declares its tops' shapes (Input's
        input_param), so that a written net says what it was compiled for. The default
        declares nothing."""

    def draw_label(self, layer):
        """A short line with the layer's main parameters for its box in drawings
        ("k3 s1 p1, 64 out"); None: the drawing lists the fields of `param_field`."""
        return None


# Caffe's kMaxBlobAxes: Blob::Reshape refuses a shape of more axes (blob.hpp).
MAX_AXES = 32


def constructor_args(module):
    """The keyword arguments that rebuild a lowered module (see the module docstring): each
    argument of its class's constructor, read from the attribute of the same name. device
    and dtype are left out: a rebuilt module takes them from the state_dict it loads."""
    args = {}
    for name, arg in inspect.signature(type(module)).parameters.items():
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        if name in module._parameters or name in module._buffers:
            args[name] = getattr(module, name) is not None
        elif name in module.__dict__:
            args[name] = module.__dict__[name]
        else:
            raise TypeError("%s keeps no attribute %r for its constructor argument of that name"
                            % (type(module).__name__, name))
    return args


def prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def geometry_text(p):
    """Kernel, stride and pad of a Convolution or Pooling parameter as written, one value
    when every spatial axis has it: "k3 s2 p1", "k3x1 s1 p1x0"."""
    def per_axis(field, h, w, default):
        if p.HasField(h) or p.HasField(w):
            return [getattr(p, h) if p.HasField(h) else default, getattr(p, w) if p.HasField(w) else default]
        if is_repeated(p.DESCRIPTOR.fields_by_name[field]):     # Convolution repeats them
            return list(getattr(p, field)) or [default]
        return [getattr(p, field)] if p.HasField(field) else [default]     # Pooling does not

    def one(values):
        return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)
    return "k%s s%s p%s" % (one(per_axis("kernel_size", "kernel_h", "kernel_w", "?")),
                            one(per_axis("stride", "stride_h", "stride_w", 1)),
                            one(per_axis("pad", "pad_h", "pad_w", 0)))


def canonical_axis(axis, ndim, what="axis"):
    """Caffe's Blob::CanonicalAxisIndex: negative axes count from the end."""
    if not -ndim <= axis < ndim:
        raise ShapeError("%s %d is out of range for a %d-axis blob" % (what, axis, ndim))
    return axis + ndim if axis < 0 else axis


def spatial_geometry(p, nspatial, has_dilation=True):
    """Kernel, pad, stride (and dilation) per spatial axis from a Convolution or Pooling
    parameter, with Caffe's rules: a repeated value applies to every axis, *_h / *_w
    override for 2-D, pad defaults to 0, stride and dilation to 1."""

    def per_axis(values, h, w, default, name):
        if p.HasField(h) or p.HasField(w):
            if nspatial != 2:
                raise ShapeError("%s/%s are for 2-D blobs only" % (h, w))
            if values:
                raise ShapeError("give either %s or %s/%s, not both" % (name, h, w))
            return [getattr(p, h) if p.HasField(h) else default,
                    getattr(p, w) if p.HasField(w) else default]
        values = list(values)
        if not values:
            return [default] * nspatial
        if len(values) == 1:
            return values * nspatial
        if len(values) != nspatial:
            raise ShapeError("%d %s values for %d spatial axes" % (len(values), name, nspatial))
        return values

    kernel = per_axis(p.kernel_size, "kernel_h", "kernel_w", None, "kernel_size")
    pad = per_axis(p.pad, "pad_h", "pad_w", 0, "pad")
    stride = per_axis(p.stride, "stride_h", "stride_w", 1, "stride")
    dilation = list(p.dilation) if has_dilation else []
    dilation = (dilation * nspatial if len(dilation) == 1 else dilation) or [1] * nspatial
    if len(dilation) != nspatial:
        raise ShapeError("%d dilation values for %d spatial axes" % (len(dilation), nspatial))
    return kernel, pad, stride, dilation

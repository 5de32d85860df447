"""What the netdef language knows about Caffe: the short names of layer types, their
positional parameters and keyword abbreviations, which types write in place, and how a
value of the language becomes a protobuf field. The reader (dsl.py) and the writer
(backends/dsl_writer.py) share these tables, so both directions map the same way.
"""
import difflib
from dataclasses import dataclass, field

from compiler.proto import caffe_pb2, is_repeated

# The LayerParameter field holding each type's own parameters (Caffe's layer sources read
# these; loss layers' common settings are loss_param). A type not listed here uses the
# field a registered LayerDef declares, or none: its parameters are then written as
# explicit `xxx_param={...}` keywords.
PARAM_FIELD = {
    "Convolution": "convolution_param", "Deconvolution": "convolution_param",
    "InnerProduct": "inner_product_param", "Pooling": "pooling_param", "ReLU": "relu_param",
    "PReLU": "prelu_param", "ELU": "elu_param", "Sigmoid": "sigmoid_param",
    "TanH": "tanh_param", "BatchNorm": "batch_norm_param", "Scale": "scale_param",
    "Bias": "bias_param", "Dropout": "dropout_param", "LRN": "lrn_param",
    "Softmax": "softmax_param", "SoftmaxWithLoss": "loss_param",
    "SigmoidCrossEntropyLoss": "loss_param", "EuclideanLoss": "loss_param",
    "MultinomialLogisticLoss": "loss_param", "HingeLoss": "hinge_loss_param",
    "InfogainLoss": "infogain_loss_param", "ContrastiveLoss": "contrastive_loss_param",
    "Accuracy": "accuracy_param", "ArgMax": "argmax_param", "Concat": "concat_param",
    "Eltwise": "eltwise_param", "Flatten": "flatten_param", "Reshape": "reshape_param",
    "Slice": "slice_param", "Crop": "crop_param", "Input": "input_param", "Data": "data_param",
    "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
    "HDF5Output": "hdf5_output_param", "MemoryData": "memory_data_param",
    "WindowData": "window_data_param", "DummyData": "dummy_data_param",
    "Power": "power_param", "Exp": "exp_param", "Log": "log_param",
    "Threshold": "threshold_param", "MVN": "mvn_param", "Embed": "embed_param",
    "Tile": "tile_param", "Reduction": "reduction_param", "SPP": "spp_param",
    "Clip": "clip_param", "Swish": "swish_param", "Python": "python_param",
    "Parameter": "parameter_param", "RNN": "recurrent_param", "LSTM": "recurrent_param",
    "PriorBox": "prior_box_param", "DetectionOutput": "detection_output_param",
    "Normalize": "norm_param", "Permute": "permute_param", "ROIPooling": "roi_pooling_param",
}

# Types that Caffe nets write in place (top = bottom): `x -> relu` rewrites x, as
# `layer { bottom: "x" top: "x" type: "ReLU" }` does. `top=` makes a new blob instead.
IN_PLACE = {"ReLU", "PReLU", "ELU", "BatchNorm", "Scale", "Bias", "Dropout"}

_GEOMETRY = {"k": "kernel_size", "s": "stride", "p": "pad"}


@dataclass
class Op:
    name: str                   # how the language calls it: "conv", or a Caffe type name
    type: str                   # the Caffe type
    positional: tuple = ()      # main-param fields given by position, after the blobs
    short: dict = field(default_factory=dict)   # keyword abbreviation -> field
    tops: int = None            # how many tops by default when not 1 (Silence: 0)

    @property
    def in_place(self):
        return self.type in IN_PLACE

    @property
    def param_field(self):
        found = PARAM_FIELD.get(self.type)
        if found is None:
            from compiler.layers import registry
            defn = registry.get(self.type)
            found = defn.param_field if defn is not None else None
        return found


_OPS = [
    Op("conv", "Convolution", ("num_output", "kernel_size", "stride", "pad"),
       dict(_GEOMETRY, d="dilation", g="group", bias="bias_term")),
    Op("deconv", "Deconvolution", ("num_output", "kernel_size", "stride", "pad"),
       dict(_GEOMETRY, d="dilation", g="group", bias="bias_term")),
    Op("pool", "Pooling", ("pool", "kernel_size", "stride", "pad"),
       dict(_GEOMETRY, **{"global": "global_pooling"})),
    Op("fc", "InnerProduct", ("num_output",), {"bias": "bias_term"}),
    Op("relu", "ReLU", (), {"slope": "negative_slope"}),
    Op("prelu", "PReLU"),
    Op("elu", "ELU"),
    Op("sigmoid", "Sigmoid"),
    Op("tanh", "TanH"),
    Op("bn", "BatchNorm", (), {"global": "use_global_stats"}),
    Op("scale", "Scale", (), {"bias": "bias_term"}),
    Op("bias", "Bias"),
    Op("dropout", "Dropout", ("dropout_ratio",), {"ratio": "dropout_ratio"}),
    Op("lrn", "LRN", ("local_size",), {"size": "local_size"}),
    Op("softmax", "Softmax"),
    Op("softmax_loss", "SoftmaxWithLoss"),
    Op("accuracy", "Accuracy"),
    Op("concat", "Concat"),
    Op("eltwise", "Eltwise", ("operation",)),
    Op("flatten", "Flatten"),
    Op("reshape", "Reshape", ("shape",)),
    Op("slice", "Slice"),
    Op("split", "Split"),
    Op("crop", "Crop"),
    Op("power", "Power"),
    Op("silence", "Silence", tops=0),
]
OPS = {op.name: op for op in _OPS}
# `a + b` and add(a, b) are Eltwise with Caffe's default operation, SUM.
ADD = Op("add", "Eltwise")
OPS["add"] = ADD
BY_TYPE = {op.type: op for op in reversed(_OPS)}


def op_for_type(type_name):
    """The Op a Caffe type name stands for: `ReLU` is relu, `PriorBox` a generic layer."""
    return BY_TYPE.get(type_name) or Op(type_name, type_name, tops=0 if type_name == "Silence" else None)


class _Unset:
    """`none`: a field given none is left unset (Caffe's default applies), so a block can
    pass an optional parameter through: conv(c, k=k, s=s) with s=none by default."""

    def __repr__(self):
        return "none"


UNSET = _Unset()


class Enum(str):
    """A bare upper-case name (MAX, TRAIN, ACROSS_CHANNELS): an enum value, checked
    against the field it is given to."""


class BlobRef:
    """A blob, by its Caffe name. Variables hold these; a layer's value is its top(s)."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "BlobRef(%r)" % self.name


class Message(dict):
    """A message literal {type="xavier", std=0.01}: field name -> value, with the syntax
    nodes of the keys for error locations."""

    def __init__(self, items, nodes):
        super().__init__(items)
        self.nodes = nodes


class FieldError(Exception):
    def __init__(self, message, hint=None, node=None):
        super().__init__(message)
        self.message, self.hint, self.node = message, hint, node


_INT_RANGE = {
    "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "uint32": (0, (1 << 32) - 1), "uint64": (0, (1 << 64) - 1),
}
_INT_KINDS = {3: "int64", 4: "uint64", 5: "int32", 13: "uint32", 17: "int32", 18: "int64",
              15: "int32", 16: "int64", 6: "uint64", 7: "uint32"}


def set_field(msg, name, value, node=None):
    """msg.<name> = value, with the language's conversions: a list for a repeated field
    (one value is a list of one), a message literal for a message, an int list for a
    BlobShape, an Enum for an enum. Raises FieldError."""
    f = msg.DESCRIPTOR.fields_by_name.get(name)
    if value is UNSET:
        if f is None:
            raise FieldError("%s has no field '%s'" % (msg.DESCRIPTOR.name, name),
                             _suggest(name, [g.name for g in msg.DESCRIPTOR.fields]), node)
        return
    if f is None:
        raise FieldError("%s has no field '%s'" % (msg.DESCRIPTOR.name, name),
                         _suggest(name, [g.name for g in msg.DESCRIPTOR.fields]), node)
    if is_repeated(f):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if f.message_type is not None and f.message_type.name == "BlobShape" and items and \
                all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            items = [items]     # shape=[1, 3, 224, 224] is one shape, not four
        container = getattr(msg, name)
        for v in items:
            if f.message_type is not None:
                _fill(container.add(), v, name, node)
            else:
                container.append(_scalar(f, v, node))
    elif f.message_type is not None:
        sub = getattr(msg, name)
        sub.SetInParent()
        _fill(sub, value, name, node)
    else:
        setattr(msg, name, _scalar(f, value, node))


def _fill(sub, value, name, node):
    if sub.DESCRIPTOR.name == "BlobShape" and isinstance(value, (list, tuple)):
        for d in value:
            sub.dim.append(_scalar(sub.DESCRIPTOR.fields_by_name["dim"], d, node))
        return
    if not isinstance(value, Message):
        raise FieldError("%s takes a message like {%s}, got %s" % (
            name, ", ".join("%s=..." % g.name for g in sub.DESCRIPTOR.fields[:2]), describe(value)),
            None, node)
    for key, v in value.items():
        set_field(sub, key, v, value.nodes.get(key, node))


def _scalar(f, v, node):
    if f.type == f.TYPE_ENUM:
        if isinstance(v, Enum):
            ev = f.enum_type.values_by_name.get(str(v))
            if ev is not None:
                return ev.number
        names = [e.name for e in f.enum_type.values]
        raise FieldError("%s is one of %s, got %s" % (f.name, ", ".join(names), describe(v)),
                         _suggest(str(v), names) if isinstance(v, str) else None, node)
    if f.type == f.TYPE_BOOL:
        if isinstance(v, bool):
            return v
        raise FieldError("%s is true or false, got %s" % (f.name, describe(v)), None, node)
    if f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise FieldError("%s is a number, got %s" % (f.name, describe(v)), None, node)
    if f.type in (f.TYPE_STRING, f.TYPE_BYTES):
        if isinstance(v, str) and not isinstance(v, Enum):
            return v if f.type == f.TYPE_STRING else v.encode("utf-8")
        hint = 'write it in quotes: %s="%s"' % (f.name, v) if isinstance(v, Enum) else None
        raise FieldError("%s is a string, got %s" % (f.name, describe(v)), hint, node)
    kind = _INT_KINDS.get(f.type)
    if kind is not None:
        if isinstance(v, int) and not isinstance(v, bool):
            lo, hi = _INT_RANGE[kind]
            if not lo <= v <= hi:
                raise FieldError("%s is a %s; %d is out of range" % (f.name, kind, v), None, node)
            return v
        hint = "use // for integer division" if isinstance(v, float) else None
        raise FieldError("%s is an integer, got %s" % (f.name, describe(v)), hint, node)
    raise FieldError("%s has a type netdef cannot set" % f.name, None, node)


def describe(v):
    """A value as error messages name it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is UNSET:
        return "none"
    if isinstance(v, Enum):
        return "the name %s" % v
    if isinstance(v, BlobRef):
        return "the blob '%s'" % v.name
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Message):
        return "a message"
    if isinstance(v, (list, tuple)):
        return "a list" if isinstance(v, list) else "%d values" % len(v)
    if isinstance(v, Op):
        return "the layer %s" % v.name
    return "a %s" % type(v).__name__.lower()


def _suggest(name, choices):
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return ("did you mean %s?" % " or ".join("'%s'" % c for c in close)) if close else None


LAYER_FIELDS = {f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields}

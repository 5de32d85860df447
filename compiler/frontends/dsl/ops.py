"""The layers the netdef language calls by short names (conv, pool, relu, ...), with their
positional parameters and keyword abbreviations. Any other Caffe type is called by its
own name (PriorBox(...)). The reader (interpreter.py) and the writer
(backends/dsl_writer.py) share this table, so both directions map the same way.

Facts about a type itself come from its LayerDef (compiler/layers): which parameter field
it reads, whether Caffe's nets write it in place, how many tops it has. A type netdef does
not run (Python, ROIPooling) has no LayerDef; its parameter field is then the one Caffe's
schema names after it (`roi_pooling_param`), or none, and its parameters are written as
explicit `xxx_param={...}` keywords.
"""
import re
from dataclasses import dataclass, field

from compiler.layers import registry
from compiler.proto import caffe_pb2

_GEOMETRY = {"k": "kernel_size", "s": "stride", "p": "pad"}
_LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
# Word boundaries of a Caffe type name: HDF5Output -> hdf5_output, ROIPooling -> roi_pooling.
_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass
class Op:
    name: str                   # how the language calls it: "conv", or a Caffe type name
    type: str                   # the Caffe type
    positional: tuple = ()      # main-param fields given by position, after the blobs
    short: dict = field(default_factory=dict)   # keyword abbreviation -> field

    @property
    def in_place(self):
        """`x -> relu` rewrites x, as `layer { bottom: "x" top: "x" type: "ReLU" }` does;
        `top=` makes a new blob instead."""
        defn = registry.get(self.type)
        return defn is not None and defn.in_place_by_default

    @property
    def param_field(self):
        """The LayerParameter field that keywords and positional parameters fill."""
        defn = registry.get(self.type)
        if defn is not None:
            return defn.param_field
        name = _WORD.sub("_", self.type).lower() + "_param"
        return name if name in _LAYER_FIELDS else None

    @property
    def tops(self):
        """How many tops the layer makes when the source does not say (Silence: none)."""
        defn = registry.get(self.type)
        return 0 if defn is not None and defn.tops == (0, 0) else 1


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
    Op("silence", "Silence"),
]
OPS = {op.name: op for op in _OPS}
# `a + b` and add(a, b) are Eltwise with Caffe's default operation, SUM.
ADD = Op("add", "Eltwise")
OPS["add"] = ADD
BY_TYPE = {op.type: op for op in reversed(_OPS)}


def op_for_type(type_name):
    """The Op a Caffe type name stands for: `ReLU` is relu, `PriorBox` a generic layer."""
    return BY_TYPE.get(type_name) or Op(type_name, type_name)

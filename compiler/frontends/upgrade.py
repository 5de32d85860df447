"""Caffe's on-load upgrades: V1 `layers {}` -> `layer {}`, and legacy net inputs -> Input.

Mirrors Caffe's UpgradeV1LayerParameter / UpgradeNetInput: enum types become type
strings, blobs_lr / weight_decay become param { lr_mult decay_mult }, V1 `param` names
become param { name } (shared weights), and layer names are kept so weights match.
"""
import sys

from compiler.errors import NetdefError
from compiler.ir import Layer
from compiler.proto import caffe_pb2, is_repeated

V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V1 fields copied unchanged into the V2 layer (same message types and names).
_COPIED = [f.name for f in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
           if f.name.endswith("_param") or f.name in ("bottom", "top", "include", "exclude",
                                                      "blobs", "loss_weight")]


def v1_to_v2(v1, file=None, line=None):
    out = caffe_pb2.LayerParameter()
    out.name = v1.name
    enum_name = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
    if enum_name == "NONE":
        raise NetdefError(file, line, v1.name or None, "V1 layer has no type")
    out.type = V1_TYPES[enum_name]
    for name in _COPIED:
        src = getattr(v1, name)
        if is_repeated(v1.DESCRIPTOR.fields_by_name[name]):
            getattr(out, name).extend(src)
        elif v1.HasField(name):
            getattr(out, name).CopyFrom(src)
    n = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n):
        spec = out.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    return out


def legacy_inputs(proto, file=None):
    """Net-level `input` + `input_dim` / `input_shape` -> one Input layer named "input"."""
    if not proto.input:
        if proto.input_dim or proto.input_shape:
            raise NetdefError(file, None, None, "input_dim/input_shape given without `input` names")
        return []
    param = caffe_pb2.LayerParameter(name="input", type="Input")
    param.top.extend(proto.input)
    n = len(proto.input)
    if proto.input_shape:
        if len(proto.input_shape) != n:
            raise NetdefError(file, None, None, "%d inputs but %d input_shape blocks"
                              % (n, len(proto.input_shape)), "give one input_shape per input")
        for shape in proto.input_shape:
            param.input_param.shape.add().CopyFrom(shape)
    elif proto.input_dim:
        if len(proto.input_dim) != 4 * n:
            raise NetdefError(file, None, None, "%d inputs need %d input_dim values, got %d"
                              % (n, 4 * n, len(proto.input_dim)),
                              "give four input_dim (N, C, H, W) per input")
        for i in range(n):
            param.input_param.shape.add().dim.extend(proto.input_dim[4 * i:4 * i + 4])
    else:
        raise NetdefError(file, None, None, "inputs %s have no shape" % list(proto.input),
                          "add input_shape { dim: ... } or four input_dim per input")
    return [Layer(name="input", type="Input", param=param, line=None, file=file)]


def upgrade_layers(proto, layers, file=None, lines=None):
    """A net's layers as Caffe has them after loading, every phase kept: legacy inputs (from
    the NetParameter `proto`) become an Input layer, V1 layers are upgraded, a V1/V2 mix is
    refused. `layers`: {"layer": [each V2 layer's wire bytes], "layers": [each V1 layer's]}
    (frontends/prototxt.py parse_net_text)."""
    lines = lines or {"layer": [], "layers": [], "input": []}
    v2, v1 = layers["layer"], layers["layers"]
    if v2 and v1:
        # Point at the first block of the rarer kind: the odd one out is usually the mistake.
        kind = "layers" if len(v1) <= len(v2) else "layer"
        blocks = v1 if kind == "layers" else v2
        message = caffe_pb2.V1LayerParameter if kind == "layers" else caffe_pb2.LayerParameter
        raise NetdefError(file, (lines[kind] or [None])[0], message.FromString(blocks[0]).name or None,
                          "the file mixes V2 `layer {}` and V1 `layers {}` blocks (this is the first of "
                          "its %d %s block(s)); Caffe refuses it (\"Refusing to upgrade inconsistent "
                          "NetParameter input\")" % (len(blocks), "V1" if kind == "layers" else "V2"),
                          "write every block in one format: `layer { type: \"Convolution\" }` (V2) or "
                          "`layers { type: CONVOLUTION }` (V1)")
    if v1:
        layer_lines = _pad(lines["layers"], len(v1))
        params = [v1_to_v2(caffe_pb2.V1LayerParameter.FromString(wire), file, ln)
                  for wire, ln in zip(v1, layer_lines)]
    else:
        params = v2
        layer_lines = _pad(lines["layer"], len(v2))
    input_line = (lines.get("input") or [None])[0]
    try:
        out = legacy_inputs(proto, file)
    except NetdefError as e:
        e.line = e.line or input_line
        raise
    for layer in out:
        layer.line = input_line
    decode = caffe_pb2.LayerParameter.FromString
    for p, ln in zip(params, layer_lines):
        # The name and type are read once here; the rest stays bytes (Layer.param).
        m = decode(p) if isinstance(p, bytes) else p
        # One string per type name (each read from a message is a new one), not per layer.
        out.append(Layer(name=m.name, type=sys.intern(m.type), param=p, line=ln, file=file))
    return out


def _pad(seq, n):
    seq = list(seq)
    return seq + [None] * (n - len(seq))

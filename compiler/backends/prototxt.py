"""IR -> prototxt text (V2 `layer {}` format, as Caffe's upgrade_net_proto_text writes it).

Each layer is emitted from the LayerParameter it was read from (so every field the user
wrote survives), after the V1 upgrade; a layer that declares its tops' shapes (Input)
declares those the net was shaped with (LayerDef.declare_shapes). Files written for Caffe
leave out netdef's own fields (transform_param's netdef_augment), which Caffe's parser
would refuse; netdef's saved .netdef keeps them.
"""
from google.protobuf import text_format

from compiler.layers import registry
from compiler.proto import caffe_pb2


def net_to_proto(net, for_caffe=True):
    proto = caffe_pb2.NetParameter(name=net.name or "")
    for layer in net.layers:
        param = proto.layer.add()
        param.CopyFrom(layer.param)
        del param.blobs[:]
        defn = registry.get(layer.type)
        if defn is not None and all(net.blobs[t].shape is not None for t in layer.tops):
            defn.declare_shapes(param, [net.blobs[t].shape for t in layer.tops])
    return strip_netdef_fields(proto) if for_caffe else proto


def strip_netdef_fields(proto):
    """Remove netdef's extensions of Caffe's schema from a NetParameter, in place."""
    for param in proto.layer:
        if param.HasField("transform_param"):
            param.transform_param.ClearField("netdef_augment")
    return proto


def net_to_text(net, for_caffe=True):
    return text_format.MessageToString(net_to_proto(net, for_caffe))

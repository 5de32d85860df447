"""IR -> prototxt text (V2 `layer {}` format, as Caffe's upgrade_net_proto_text writes it).

Each layer is emitted from the LayerParameter it was read from (so every field the user
wrote survives), after the V1 upgrade; a layer that declares its tops' shapes (Input)
declares those the net was shaped with (LayerDef.declare_shapes).
"""
from google.protobuf import text_format

from compiler.layers import registry
from compiler.proto import caffe_pb2


def net_to_proto(net):
    proto = caffe_pb2.NetParameter(name=net.name or "")
    for layer in net.layers:
        param = proto.layer.add()
        param.CopyFrom(layer.param)
        del param.blobs[:]
        defn = registry.get(layer.type)
        if defn is not None and all(net.blobs[t].shape is not None for t in layer.tops):
            defn.declare_shapes(param, [net.blobs[t].shape for t in layer.tops])
    return proto


def net_to_text(net):
    return text_format.MessageToString(net_to_proto(net))

"""IR -> prototxt text (V2 `layer {}` format, as Caffe's upgrade_net_proto_text writes it).

Each layer is emitted from the LayerParameter it was read from (so every field the user
wrote survives), after the V1 upgrade; Input layers carry the shapes the net was shaped
with.
"""
from google.protobuf import text_format

from compiler.proto import caffe_pb2


def net_to_proto(net):
    proto = caffe_pb2.NetParameter(name=net.name or "")
    for layer in net.layers:
        param = proto.layer.add()
        param.CopyFrom(layer.param)
        del param.blobs[:]
        if layer.type == "Input" and all(net.blobs[t].shape is not None for t in layer.tops):
            param.input_param.Clear()
            for t in layer.tops:
                param.input_param.shape.add().dim.extend(net.blobs[t].shape)
    return proto


def net_to_text(net):
    return text_format.MessageToString(net_to_proto(net))

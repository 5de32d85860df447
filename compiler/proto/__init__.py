"""netdef's protobuf schema for Caffe files (caffe.proto) and its generated module."""
from compiler.proto import caffe_pb2

__all__ = ["caffe_pb2", "is_repeated"]


def is_repeated(field):
    """Whether a FieldDescriptor is a repeated field. protobuf 5 added `is_repeated` and
    later releases drop `label`; older ones have only `label`."""
    flag = getattr(field, "is_repeated", None)
    return flag if flag is not None else field.label == field.LABEL_REPEATED

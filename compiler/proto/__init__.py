"""netdef's protobuf schema for Caffe files (caffe.proto) and its generated module."""
from compiler.proto import caffe_pb2

__all__ = ["caffe_pb2"]

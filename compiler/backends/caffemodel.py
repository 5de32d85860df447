"""IR + module -> binary .caffemodel (and its prototxt), the file Caffe's
Net::CopyTrainedLayersFrom reads.

Each layer is written as Caffe's Net::ToProto writes it: the layer's full LayerParameter
followed by its blobs. A BlobProto holds `shape` (packed int64 dims) and `data` (packed
little-endian float32). The LayerParameter without blobs is serialized by protobuf; the
blobs are appended by hand, their data written straight from the numpy array's buffer,
since protobuf's repeated-float field would copy every weight through a Python list
(hundreds of MB for VGG-16). Protobuf merges fields of one message that appear in several
chunks, so the concatenation is the same message as if protobuf had written it all.
"""
import numpy as np

from compiler.backends import torch_weights
from compiler.backends.prototxt import net_to_proto, net_to_text

NET_NAME = 1          # NetParameter.name
NET_LAYER = 100       # NetParameter.layer (V2 LayerParameter)
LAYER_BLOBS = 7       # LayerParameter.blobs
BLOB_DATA = 5         # BlobProto.data, packed float
BLOB_SHAPE = 7        # BlobProto.shape
SHAPE_DIM = 1         # BlobShape.dim, packed int64


def _varint(x):
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _header(number, length):
    """Key and length of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(length)


def blob_chunks(arr):
    """A BlobProto as a list of buffers: its header bytes, then a byte view of the float
    data (the array itself when it is already little-endian float32 and contiguous), which
    file.write takes without a copy."""
    dims = b"".join(_varint(int(d)) for d in arr.shape)
    shape = _header(SHAPE_DIM, len(dims)) + dims
    data = memoryview(np.ascontiguousarray(arr, dtype="<f4")).cast("B")
    head = _header(BLOB_SHAPE, len(shape)) + shape + _header(BLOB_DATA, len(data))
    return [head, data]


def blob_field(number, arr):
    """A BlobProto written as field `number` of the message holding it (LayerParameter's
    blobs, SolverState's history): its key and length, then blob_chunks."""
    chunks = blob_chunks(arr)
    return [_header(number, sum(len(c) for c in chunks))] + chunks


def caffemodel_chunks(net, blobs):
    """net: the IR; blobs: {layer name: [arrays in Caffe's blob order]}. Yields the bytes of
    a NetParameter, layer by layer, in net order."""
    proto = net_to_proto(net)
    if proto.name:
        yield _header(NET_NAME, len(proto.name.encode("utf-8"))) + proto.name.encode("utf-8")
    for param in proto.layer:
        body = [param.SerializeToString()]
        for arr in blobs.get(param.name, ()):
            body.extend(blob_field(LAYER_BLOBS, arr))
        yield _header(NET_LAYER, sum(len(c) for c in body))
        yield from body


def write_caffemodel(f, net, gm):
    """Write the module's current blobs as a .caffemodel to the binary file `f`. Blobs are
    written as float32, Caffe's type."""
    for chunk in caffemodel_chunks(net, torch_weights.module_blobs(net, gm)):
        f.write(chunk)


def export_caffemodel(net, gm, path, prototxt_path=None):
    """Write the module's current blobs as a .caffemodel at `path` (and the net as prototxt
    text at `prototxt_path` when given)."""
    with open(path, "wb") as f:
        write_caffemodel(f, net, gm)
    if prototxt_path is not None:
        with open(prototxt_path, "w") as f:
            f.write(net_to_text(net))

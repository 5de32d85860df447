"""Binary .caffemodel -> {layer name: [numpy float32 array per blob]}.

The protobuf wire format is walked directly: only layer names, types and blobs are read,
and each blob's packed floats become a numpy array with numpy.frombuffer, never a Python
list. V2 (`layer`, field 100) and V1 (`layers`, field 2) files both load; blobs written
with the legacy 4-D num/channels/height/width dims keep them in `legacy_shape`. A
.solverstate (SolverState: iter, learned_net, history blobs, current_step) is walked the
same way (`read_solver_state`): its history is as big as the weights.

The file is never read whole: it is mapped (copy-on-write, so the arrays are writable and
the file never changes) and every blob is a view into the map, so only the pages of the
blobs a net copies are ever read. A 5 GB file with a few layers a net uses loads in the
memory of those layers. V1 files' double_data blobs stay float64 views too; they become
float32 when copied into a module. Shapes are checked as Caffe's Blob::Reshape does: at most
32 axes, no dimension beyond a 32-bit count, even where another dimension is 0.
"""
import mmap

import numpy as np

from compiler.errors import NetdefError
from compiler.files import regular_file
from compiler.layers.base import MAX_AXES
from compiler.frontends.upgrade import V1_TYPES
from compiler.ir import LayerBlobs
from compiler.proto import caffe_pb2

V1_TYPE_NAMES = caffe_pb2.V1LayerParameter.LayerType
# Caffe's blob counts are int: a larger dimension cannot be a real blob's.
MAX_DIM = (1 << 31) - 1


class _Reader:
    def __init__(self, buf, file, start=0, end=None, kind="caffemodel"):
        self.buf, self.file, self.kind = buf, file, kind
        self.pos, self.end = start, len(buf) if end is None else end

    def fail(self, what, layer=None):
        raise NetdefError(self.file, None, layer, "not a valid %s: %s at byte %d" % (self.kind, what, self.pos),
                          "the file is truncated or corrupt, or not a .%s" % self.kind)

    def varint(self):
        result = shift = 0
        buf, pos = self.buf, self.pos
        while True:
            if pos >= self.end:
                self.fail("truncated varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return result
            shift += 7
            if shift > 63:
                self.fail("varint too long")

    def fields(self):
        """Yields (field number, wire type, value); value is an int for varints and fixed
        fields, or a (start, end) span for length-delimited fields."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                self.fail("field number 0")
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 2:
                n = self.varint()
                start = self.pos
                if n > self.end - start:
                    self.fail("length %d runs past the end" % n)
                self.pos = start + n
                yield number, wire, (start, start + n)
            elif wire == 5:
                if self.pos + 4 > self.end:
                    self.fail("truncated fixed32")
                v = self.buf[self.pos:self.pos + 4]
                self.pos += 4
                yield number, wire, bytes(v)
            elif wire == 1:
                if self.pos + 8 > self.end:
                    self.fail("truncated fixed64")
                v = self.buf[self.pos:self.pos + 8]
                self.pos += 8
                yield number, wire, bytes(v)
            else:
                self.fail("unsupported wire type %d" % wire)

    def sub(self, span):
        return _Reader(self.buf, self.file, span[0], span[1], self.kind)

    def text(self, span):
        try:
            return bytes(self.buf[span[0]:span[1]]).decode("utf-8")
        except UnicodeDecodeError:
            self.fail("a name that is not UTF-8")


def _packed_varints(r, span):
    sub = r.sub(span)
    out = []
    while sub.pos < sub.end:
        out.append(sub.varint())
    return out


def _blob(r, span, layer):
    shape, legacy = None, [0, 0, 0, 0]
    chunks, dchunks = [], []
    for number, wire, v in r.sub(span).fields():
        if number == 7 and wire == 2:                       # shape: BlobShape
            shape = []
            for n2, w2, v2 in r.sub(v).fields():
                if n2 == 1:
                    shape.extend(_packed_varints(r, v2) if w2 == 2 else [v2])
                    if len(shape) > MAX_AXES:
                        r.fail("a blob of more than %d axes (Caffe's most)" % MAX_AXES, layer)
        elif number == 5:                                    # data: packed float
            if wire == 2:
                if (v[1] - v[0]) % 4:
                    r.fail("float data whose length is not a multiple of 4")
                chunks.append(np.frombuffer(r.buf, dtype="<f4", count=(v[1] - v[0]) // 4, offset=v[0]))
            elif wire == 5:
                chunks.append(np.frombuffer(v, dtype="<f4"))
        elif number == 8:                                    # double_data
            if wire == 2:
                if (v[1] - v[0]) % 8:
                    r.fail("double data whose length is not a multiple of 8")
                dchunks.append(np.frombuffer(r.buf, dtype="<f8", count=(v[1] - v[0]) // 8, offset=v[0]))
            elif wire == 1:
                dchunks.append(np.frombuffer(v, dtype="<f8"))
        elif 1 <= number <= 4 and wire == 0:                 # legacy num/channels/height/width
            legacy[number - 1] = v
    if chunks or dchunks:
        chunks = chunks or dchunks
        data = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    else:
        data = np.zeros(0, np.float32)
    is_legacy = shape is None
    if is_legacy:
        shape = legacy if any(legacy) else [data.size] if data.size else [0]
    if len(shape) > MAX_AXES:      # legacy shapes have 4; a packed shape is checked as it is read
        r.fail("a blob of %d axes (Caffe's blobs have at most %d)" % (len(shape), MAX_AXES), layer)
    if any(d > MAX_DIM for d in shape):
        r.fail("a blob of shape %s: a dimension over %d" % (list(shape), MAX_DIM), layer)
    count = 1
    for d in shape:
        count *= d
    if count != data.size:
        r.fail("a blob of shape %s holding %d values" % (list(shape), data.size), layer)
    return data.reshape(shape), is_legacy


def _map(path, what):
    """A private, copy-on-write map of a file (see the module's docstring)."""
    try:
        with open(path, "rb") as f:
            # ACCESS_COPY: writable views (torch takes them as they are) over a private map
            # whose pages are read only when a blob is used; the file itself never changes.
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as e:
        raise NetdefError(str(path), None, None, "cannot read %s: %s" % (what, getattr(e, "strerror", None) or e)) from None


def read_caffemodel(path):
    """-> list of LayerBlobs in file order (layers without blobs included), their arrays
    views into a map of the file (see the module's docstring)."""
    if regular_file(path, "weights file").st_size == 0:
        return parse_caffemodel(b"", str(path))
    return parse_caffemodel(_map(path, "weights"), str(path))


def read_solver_state(path):
    """A binary .solverstate (Caffe's SolverState message) -> (iter, learned_net or None,
    current_step, [history arrays]). The history blobs, as big as the net's weights, go
    through the same zero-copy walk as a .caffemodel's blobs, not through protobuf's
    repeated-float field (a Python float per value)."""
    empty = regular_file(path, "solver state").st_size == 0
    r = _Reader(memoryview(b"" if empty else _map(path, "the solver state")), str(path), kind="solverstate")
    iteration, learned, current_step, history = 0, None, 0, []
    for number, wire, v in r.fields():
        if number == 1 and wire == 0:            # iter
            iteration = _int32(v)
        elif number == 2 and wire == 2:          # learned_net
            learned = r.text(v)
        elif number == 3 and wire == 2:          # history: BlobProto
            history.append(_blob(r, v, None)[0])
        elif number == 4 and wire == 0:          # current_step
            current_step = _int32(v)
    return iteration, learned, current_step, history


def _int32(v):
    """A varint-encoded int32 (negative ones are written as 64-bit two's complement)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def parse_caffemodel(buf, file="<bytes>"):
    r = _Reader(memoryview(buf), file)
    layers = []
    for number, wire, v in r.fields():
        if wire != 2 or number not in (2, 100):
            continue
        v1 = number == 2
        name, ltype, blobs, legacy = "", "", [], []
        for n2, w2, v2 in r.sub(v).fields():
            if (n2 == 4 if v1 else n2 == 1) and w2 == 2:
                name = r.text(v2)
            elif not v1 and n2 == 2 and w2 == 2:
                ltype = r.text(v2)
            elif v1 and n2 == 5 and w2 == 0:
                ltype = V1_TYPE_NAMES.Name(v2) if v2 in V1_TYPE_NAMES.values() else str(v2)
            elif (n2 == 6 if v1 else n2 == 7) and w2 == 2:
                arr, is_legacy = _blob(r, v2, name or None)
                blobs.append(arr)
                legacy.append(is_legacy)
        if v1:
            ltype = V1_TYPES.get(ltype, ltype)
        layers.append(LayerBlobs(name, ltype, blobs, legacy))
    if not layers and len(buf):
        raise NetdefError(file, None, None, "not a caffemodel: no layers found",
                          "a .caffemodel is a binary NetParameter written by Caffe")
    return layers

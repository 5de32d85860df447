"""Arrays in and out of .npz files, keyed by Caffe blob names.

Blob names are data: `np.savez(f, **arrays)` would take a blob named `file` as its own
argument and fail, and a name is stored as a zip entry name as it is (`../x` included;
nothing is ever extracted to disk). Reading checks each array's header (dtype, shape)
before anything is allocated: an .npz is a user file like any other, and a header that
declares a 4 GB array must be refused, not allocated. Nothing is unpickled.
"""
import zipfile

import numpy as np

from compiler.errors import NetdefError
from compiler.files import regular_file

NUMERIC_KINDS = "biuf"      # bool, signed, unsigned, float: what a blob can be fed from


def write_npz(path, arrays):
    """{name: array} -> an .npz at `path` (a path or a binary file), one entry per name."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def read_npz(path, max_bytes):
    """An .npz (or a plain .npy, read as one array named by the file's stem) -> {name: array}.
    Each array must be numeric and the whole must fit `max_bytes`, checked from the
    headers before reading. Errors name the file and the entry."""
    shown = str(path)
    regular_file(path, "input file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                entries = [(i.filename[:-4] if i.filename.endswith(".npy") else i.filename, i)
                           for i in z.infolist() if not i.is_dir()]
                headers = []
                for name, info in entries:
                    with z.open(info) as f:
                        headers.append((name, info) + _header(f, shown, name))
                _check_total(headers, max_bytes, shown)
                out = {}
                for name, info, shape, dtype, fortran in headers:
                    with z.open(info) as f:
                        _header(f, shown, name)
                        out[name] = _read_body(f, shape, dtype, fortran, shown, name)
                return out
        with open(path, "rb") as f:
            name = _stem(shown)
            shape, dtype, fortran = _header(f, shown, name)
            _check_total([(name, None, shape, dtype, fortran)], max_bytes, shown)
            return {name: _read_body(f, shape, dtype, fortran, shown, name)}
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise NetdefError(shown, None, None, "cannot read arrays: %s" % (getattr(e, "strerror", None) or e)) from None


def _stem(path):
    import os
    return os.path.splitext(os.path.basename(path))[0]


def _header(f, shown, name):
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError("unsupported .npy format version %s" % (version,))
        shape, fortran, dtype = read(f, max_header_size=10000)
    except (ValueError, SyntaxError, TypeError) as e:
        raise NetdefError(shown, None, None, "entry '%s' is not a numpy array: %s" % (name, e)) from None
    if dtype.hasobject or dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise NetdefError(shown, None, None, "array '%s' has dtype %s; blobs are fed from numbers"
                          % (name, dtype), "store it as float32")
    return shape, dtype, fortran


def _check_total(headers, max_bytes, shown):
    total = 0
    for name, _, shape, dtype, _ in headers:
        count = 1
        for d in shape:
            count *= d
        total += count * dtype.itemsize
    if total > max_bytes:
        from compiler.passes.validate import human_bytes
        raise NetdefError(shown, None, None, "the arrays would take %s, over the memory budget of %s"
                          % (human_bytes(total), human_bytes(max_bytes)),
                          "raise it with --max-memory or NETDEF_MAX_MEMORY if this is intended")


def _read_body(f, shape, dtype, fortran, shown, name):
    count = 1
    for d in shape:
        count *= d
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise NetdefError(shown, None, None, "array '%s' is truncated (%d of %d bytes)"
                          % (name, len(data), count * dtype.itemsize))
    array = np.frombuffer(bytearray(data), dtype=dtype)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)

"""Weights as a safetensors file (https://github.com/huggingface/safetensors), the format
`netdef export --safetensors` writes and netdef.load(weights=...) reads.

One tensor per Caffe blob, keyed `LAYER/I` (the layer's name, then the blob's index in
Caffe's order: "conv1/0" is conv1's filter, "conv1/1" its bias), holding the blob in
Caffe's shape, float32. A blob shared by several layers (param { name: ... }) is stored
once, under the first layer that has it; the metadata's "shared" entry ({key: key it is
stored under}, JSON) says which keys the others would have had. The metadata's "format"
entry is the format's version stamp (compiler/files.py): safetensors files are read without running code,
so nothing but that stamp is trusted beyond the tensors.

The safetensors package is an optional extra (pip install netdef[safetensors]).
"""
import json
import re

from compiler.errors import NetdefError
from compiler.files import check_format, format_stamp, regular_file
from compiler.ir import LayerBlobs

SUFFIX = ".safetensors"
FORMAT_KIND = "safetensors"
FORMAT_VERSION = 1
FORMAT_STAMP = format_stamp(FORMAT_KIND, FORMAT_VERSION)


def blob_key(layer, index):
    return "%s/%d" % (layer, index)


def split_key(key):
    """"conv1/7x7_s2/0" -> ("conv1/7x7_s2", 0): layer names may contain slashes, the index
    never does."""
    m = re.fullmatch(r"(.+)/(\d+)", key)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def safetensors_package(file):
    """The safetensors package (with its numpy functions), or a NetdefError saying how to get it."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise NetdefError(str(file), None, None, "reading or writing safetensors files needs the "
                          "safetensors package", "pip install 'netdef[safetensors]'") from None
    return safetensors


def read_safetensors(path):
    """A netdef safetensors file -> [LayerBlobs] in the file's layer order, shared blobs
    given to every layer that shares them."""
    file = str(path)
    regular_file(path, "weights file")
    safetensors = safetensors_package(file)
    try:
        with safetensors.safe_open(file, framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, ValueError) as e:
        raise NetdefError(file, None, None, "not a readable safetensors file: %s" % e) from None
    check_format(metadata.get("format"), FORMAT_KIND, FORMAT_VERSION, file)
    try:
        shared = json.loads(metadata.get("shared", "{}"))
    except ValueError as e:
        raise NetdefError(file, None, None, "its 'shared' metadata is not JSON: %s" % e) from None
    keys = list(arrays) + [k for k in shared if k not in arrays]
    layers = {}
    for key in keys:
        layer, index = split_key(key)
        if layer is None:
            raise NetdefError(file, None, None, "tensor %r is not named LAYER/INDEX" % key,
                              "netdef reads the safetensors files that netdef export writes")
        source = shared.get(key, key)
        if source not in arrays:
            raise NetdefError(file, None, None, "blob %s is shared with %s, which the file lacks" % (key, source))
        layers.setdefault(layer, {})[index] = arrays[source]
    out = []
    for name, blobs in layers.items():
        if sorted(blobs) != list(range(len(blobs))):
            raise NetdefError(file, None, None, "layer %s has blobs %s; Caffe's are numbered from 0 without gaps"
                              % (name, sorted(blobs)))
        out.append(LayerBlobs(name, "", [blobs[i].astype("float32", copy=False) for i in range(len(blobs))],
                              [False] * len(blobs)))
    return out


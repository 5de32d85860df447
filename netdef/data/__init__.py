"""Caffe's data layers made real: their sources (image lists, LMDB/LevelDB of Datum records,
HDF5 files), Caffe's DataTransformer, and batches for `netdef run` and training.

Importing this package registers the source-shapes hook of each data layer type with the
compiler (compiler/layers/registry.py); the compiler never imports it. The hook loads the
readers (netdef/data/sources.py, with numpy) when a net has such a layer, so that
`import netdef` and the commands that only read nets stay light. The optional packages
(opencv-python-headless, lmdb, h5py: the `data` extra) load on first use.
"""
from compiler.layers import registry

# The types whose sources netdef reads: the keys of sources.SOURCES, named here so that
# registering the hooks does not load the readers (tests/test_data.py compares the two).
SOURCE_TYPES = ("ImageData", "Data", "HDF5Data")


def _source_shapes(layer, net_file):
    from netdef.data.sources import source_shapes
    return source_shapes(layer, net_file)


for _type in SOURCE_TYPES:
    registry.register_source_shapes(_type, _source_shapes)

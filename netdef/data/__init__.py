"""Caffe's data layers made real: their sources (image lists, LMDB/LevelDB of Datum records,
HDF5 files), Caffe's DataTransformer, and batches for `netdef run` and training.

Importing this package registers the source-shapes hook of each data layer type with the
compiler (compiler/layers/registry.py); the compiler never imports it. The optional
packages (opencv-python-headless, lmdb, h5py: the `data` extra) load on first use.
"""
from netdef.data.sources import register

register()

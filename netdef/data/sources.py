"""The sources behind Caffe's data layers, read as Caffe reads them.

- ImageData: a `path label` list (netdef/data/lists.py), `root_folder` prepended as a plain
  string, each image decoded and resized by OpenCV as caffe::ReadImageToCVMat does.
- Data: Datum records of an LMDB (the `lmdb` package, opened read-only without a lock file,
  so a read-only copy works) or a LevelDB (the `plyvel` package where it installs), in key
  order; raw (`data` or `float_data`) or encoded (`encoded: true`, decoded by OpenCV).
- HDF5Data: the files of a list, each top read from the dataset of the same name and
  converted to float32, file after file; a listed folder (a shard of `netdef features`'
  cache) holds one .npy per top instead, memory-mapped.

A source is a sequence of items; a layer's batch k holds the items at positions
k*batch_size .. (k+1)*batch_size-1 of an endless walk over it, so a batch wraps to the
start inside a batch, as Caffe's do. With `shuffle` the walk visits a new permutation each
epoch (Caffe reshuffles at every epoch; for HDF5Data netdef shuffles rows across all files,
where Caffe shuffles the file order and the rows inside each file); `rand_skip` starts it
at a random position below rand_skip. Every random draw (permutations, skip, crop offsets,
mirror, augmentations) comes from a generator seeded by (seed, layer name, position), so
any batch can be made in any worker process, the same seed gives the same run, and a
resumed run continues the sequence.

Paths (`source`, `root_folder`, `mean_file`, HDF5 names) are relative to the working
directory, as Caffe resolves them.
"""
import functools
import os
import zlib

import numpy as np

from compiler.errors import NetdefError
from compiler.layers.base import ShapeError
from netdef.data import codec
from netdef.data.augment import Augmentations
from netdef.data.lists import read_image_list, read_name_list
from netdef.data.transformer import DataTransformer

RELATIVE_HINT = "paths in a data layer are relative to the working directory, as in Caffe"


class Source:
    """Items of one data layer; subclasses define `tops`, `__len__` and `item`."""
    shuffle = False
    rand_skip = 0

    def __init__(self, param, phase):
        self.param = param
        self.name = param.name
        self.phase = phase
        self.tops = list(param.top)

    def item(self, index, rng):
        """-> one array per top for item `index` (transformed, float32)."""
        raise NotImplementedError

    def top_shapes(self):
        rng = np.random.default_rng(0)
        return [(self.batch_size,) + a.shape for a in self.item(0, rng)]

    def batch(self, k, seed):
        """Batch k of the walk: {top: array with the batch axis first}."""
        key = zlib.crc32(self.name.encode("utf-8"))
        n = len(self)
        skip = 0
        if self.rand_skip:
            skip = int(np.random.default_rng([seed, key, 2]).integers(self.rand_skip))
        rows, first = [], None
        for position in range(k * self.batch_size + skip, (k + 1) * self.batch_size + skip):
            epoch, index = divmod(position, n)
            if self.shuffle:
                index = int(_permutation(n, seed, key, epoch)[index])
            row = self.item(index, np.random.default_rng([seed, key, 0, position]))
            shapes = [a.shape for a in row]
            if first is None:
                first = (shapes, index)
            elif shapes != first[0]:
                raise NetdefError(None, None, self.name, "%s gives %s but %s, earlier in the same "
                                  "batch, gives %s: the items of a batch must have one size"
                                  % (self.describe(index), _shapes(shapes), self.describe(first[1]),
                                     _shapes(first[0])),
                                  "resize the images to one size (new_height/new_width, or "
                                  "convert-imageset --resize-height/--resize-width) or crop them")
            rows.append(row)
        return {top: np.stack([row[j] for row in rows]) for j, top in enumerate(self.tops)}

    def describe(self, index):
        return "item %d" % index


@functools.lru_cache(maxsize=8)
def _permutation(n, seed, key, epoch):
    return np.random.default_rng([seed, key, 1, epoch]).permutation(n)


def _shapes(shapes):
    return ", ".join("x".join(map(str, s)) or "a scalar" for s in shapes)


class ImageSource(Source):
    """A source of images: Caffe's DataTransformer, then netdef's augmentations (TRAIN)."""

    def __init__(self, param, phase):
        super().__init__(param, phase)
        self.transform = DataTransformer(param.transform_param, phase, self.name)
        self.augment = Augmentations(param.transform_param, phase, self.name)

    def transformed(self, img, rng, what):
        """CxHxW image -> the layer's float32 output for it."""
        img = self.augment.crop_image(img, rng)
        return self.augment.colour(self.transform(img, rng, what), rng)


class ImageListSource(ImageSource):
    """ImageData: image files named by a list."""
    type = "ImageData"

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.image_data_param
        self.list_file, self.root = p.source, p.root_folder
        self.new_height, self.new_width, self.is_color = p.new_height, p.new_width, p.is_color
        self.batch_size, self.shuffle, self.rand_skip = p.batch_size, p.shuffle, p.rand_skip
        if (self.new_height > 0) != (self.new_width > 0):
            raise NetdefError(None, None, self.name, "new_height and new_width must be set together",
                              "set both (Caffe resizes only when both are set), or neither")
        self.items = read_image_list(self.list_file, self.name)

    def __len__(self):
        return len(self.items)

    def describe(self, index):
        path, _, line = self.items[index]
        return "%s:%d (%s)" % (self.list_file, line, self.root + path)

    def item(self, index, rng):
        path, label, line = self.items[index]
        try:
            img = codec.read_image(self.root + path, self.new_height, self.new_width, self.is_color)
        except codec.ImageError as e:
            raise NetdefError(self.list_file, line, self.name, str(e), RELATIVE_HINT) from None
        data = self.transformed(img.transpose(2, 0, 1), rng, "image '%s'" % (self.root + path))
        return (data, np.float32(label))[:len(self.tops)]


class DatumSource(ImageSource):
    """Data: Datum records of an LMDB or LevelDB, in key order."""
    type = "Data"

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.data_param
        self.path, self.batch_size, self.rand_skip = p.source, p.batch_size, p.rand_skip
        from netdef.data.db import open_db
        self.db = open_db(self.path, p.backend, self.name)

    def __len__(self):
        return len(self.db)

    def describe(self, index):
        return "record '%s' of %s" % (self.db.key(index), self.path)

    def item(self, index, rng):
        datum = self.db.datum(index)
        try:
            img = codec.datum_array(datum, self.transform.force_color, self.transform.force_gray)
        except codec.ImageError as e:
            raise NetdefError(self.path, None, self.name, "%s: %s" % (self.describe(index), e)) from None
        data = self.transformed(img, rng, self.describe(index))
        return (data, np.float32(datum.label))[:len(self.tops)]


class HDF5Source(Source):
    """HDF5Data: rows of the listed files; top t reads dataset t, as float32."""
    type = "HDF5Data"

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.hdf5_data_param
        self.list_file, self.batch_size, self.shuffle = p.source, p.batch_size, p.shuffle
        self.h5py = codec.optional("h5py", "h5py", "reading HDF5Data sources")
        self.files = read_name_list(self.list_file, self.name)
        self._open = {}
        self.starts = [0]
        for path in self.files:
            rows = {top: self._dataset(path, top).shape[:1] for top in self.tops}
            counts = {r[0] if r else 0 for r in rows.values()}
            if len(counts) != 1 or 0 in counts:
                raise NetdefError(path, None, self.name, "the datasets %s have different or no rows: %s"
                                  % (", ".join(self.tops), rows),
                                  "every top's dataset needs the same number of rows (axis 0)")
            self.starts.append(self.starts[-1] + counts.pop())

    def __len__(self):
        return self.starts[-1]

    def _file(self, path):
        # Opened once per process: h5py handles must not cross a fork into the workers.
        key = (os.getpid(), path)
        if key not in self._open:
            try:
                self._open[key] = self.h5py.File(path, "r")
            except FileNotFoundError:
                raise NetdefError(path, None, self.name, "HDF5 file '%s' (listed in %s) does not exist"
                                  % (path, self.list_file), RELATIVE_HINT) from None
            except OSError as e:
                raise NetdefError(path, None, self.name, "not a readable HDF5 file: %s" % e) from None
        return self._open[key]

    def _dataset(self, path, top):
        if os.path.isdir(path):
            # A feature cache's shard (netdef features): one memory-mapped .npy per top.
            try:
                return np.load(os.path.join(path, top + ".npy"), mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise NetdefError(path, None, self.name, "shard folder '%s' has no readable %s.npy for top '%s': %s"
                                  % (path, top, top, getattr(e, "strerror", None) or e),
                                  "a listed folder holds one .npy per top, as netdef features writes") from None
        f = self._file(path)
        if top not in f:
            raise NetdefError(path, None, self.name, "HDF5 file '%s' has no dataset '%s' for top "
                              "'%s' (it has %s)" % (path, top, top, ", ".join(sorted(f.keys())) or "none"),
                              "HDF5Data reads each top from the dataset of the same name")
        return f[top]

    def item(self, index, rng):
        number = int(np.searchsorted(self.starts, index, side="right")) - 1
        path, row = self.files[number], index - self.starts[number]
        return tuple(np.asarray(self._dataset(path, top)[row], np.float32) for top in self.tops)

    def describe(self, index):
        number = int(np.searchsorted(self.starts, index, side="right")) - 1
        return "row %d of %s" % (index - self.starts[number], self.files[number])

    def __getstate__(self):
        state = dict(self.__dict__, _open={})
        del state["h5py"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, h5py=codec.optional("h5py", "h5py", "reading HDF5Data sources"))


SOURCES = {cls.type: cls for cls in (ImageListSource, DatumSource, HDF5Source)}


def make_source(param, phase):
    """The source of a data layer (a caffe_pb2.LayerParameter); raises NetdefError."""
    source = SOURCES[param.type](param, phase)
    if not source.batch_size:
        raise NetdefError(None, None, param.name, "batch_size is 0", "set batch_size in the layer's parameters")
    return source


def source_shapes(layer, net_file):
    """The shapes hook: a data layer's top shapes from its source (the first item, after the
    transform). Shapes given on the command line take precedence and skip this."""
    try:
        return make_source(layer.param, "TEST").top_shapes()
    except NetdefError as e:
        where = e.location() + ": " if e.line is not None else ""
        hint = e.hint
        if "does not exist" in e.message:
            hint = ("run from the folder its paths are relative to (as Caffe, netdef resolves them "
                    "against the working directory, here %s), or give the shapes of its tops, e.g. "
                    "--input-shape %s=N,C,H,W" % (os.getcwd(), layer.param.top[0]))
        raise ShapeError(where + e.message, hint) from None

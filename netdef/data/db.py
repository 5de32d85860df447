"""Key-value databases of Datum records, as Caffe's db::LMDB and db::LevelDB hold them.

Records are read in key order (byte order, the cursor order of both databases). An LMDB
is opened read-only and without a lock file, so a read-only copy (../shared) works; it is
reopened in each worker process, because an LMDB environment must not cross a fork.
"""
import os

from compiler.errors import NetdefError
from compiler.proto import caffe_pb2
from netdef.data.codec import optional

LMDB, LEVELDB = caffe_pb2.DataParameter.LMDB, caffe_pb2.DataParameter.LEVELDB
CONVERT_HINT = ("write an LMDB instead: netdef data convert-imageset ROOT LIST DB "
                "(and set backend: LMDB)")


def open_db(path, backend, layer=None):
    if not os.path.exists(path):
        raise NetdefError(path, None, layer, "database '%s' does not exist" % path,
                          "paths in a data layer are relative to the working directory, as in Caffe")
    cls = LmdbReader if backend == LMDB else LevelDbReader
    return cls(path, layer)


class _DbReader:
    """Records by index over the database's keys; the handle is opened once per process."""
    kind = None

    def __init__(self, path, layer=None):
        self.path, self.layer = path, layer
        self._handle, self._pid = None, None
        self.keys = self._keys()
        if not self.keys:
            raise NetdefError(path, None, layer, "the %s has no records" % self.kind)

    def _open(self):
        if self._pid != os.getpid():
            self._handle, self._pid = self._connect(), os.getpid()
        return self._handle

    def __len__(self):
        return len(self.keys)

    def key(self, index):
        return self.keys[index].decode("utf-8", "replace")

    def datum(self, index):
        return parse_datum(self.value(index), self.path, self.key(index), self.layer)

    def __getstate__(self):
        return dict(self.__dict__, _handle=None, _pid=None)


# Open LMDB environments by (process, real path): the lmdb package refuses to open one
# environment twice in a process, and every reader of it (the shapes hook, each data layer)
# can share one handle. A forked child must not use its parent's: close_lmdb() runs before
# DataLoader workers start, and each worker opens its own.
_ENVS = {}


def close_lmdb():
    """Close this process's LMDB environments (they reopen on the next read)."""
    for key in [k for k in _ENVS if k[0] == os.getpid()]:
        _ENVS.pop(key).close()


class LmdbReader(_DbReader):
    kind = "LMDB"

    def _open(self):
        key = (os.getpid(), os.path.realpath(self.path))
        if key not in _ENVS:
            _ENVS[key] = self._open_env()
        return _ENVS[key]

    def _open_env(self):
        lmdb = optional("lmdb", "lmdb", "reading an LMDB")
        try:
            return lmdb.open(self.path, readonly=True, lock=False, readahead=False,
                             subdir=os.path.isdir(self.path))
        except lmdb.Error as e:
            raise NetdefError(self.path, None, self.layer, "not an LMDB: %s" % e,
                              "Data with backend LMDB reads a folder written by convert_imageset "
                              "or netdef data convert-imageset") from None

    def _keys(self):
        with self._open().begin() as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def value(self, index):
        with self._open().begin() as txn:
            return txn.get(self.keys[index])


class LevelDbReader(_DbReader):
    kind = "LevelDB"

    def _connect(self):
        try:
            import plyvel
        except ImportError:
            raise NetdefError(self.path, None, self.layer, "backend LEVELDB needs a LevelDB binding "
                              "(the plyvel package), which is not installed", CONVERT_HINT) from None
        try:
            return plyvel.DB(self.path)
        except plyvel.Error as e:
            raise NetdefError(self.path, None, self.layer, "not a LevelDB: %s" % e, CONVERT_HINT) from None

    def _keys(self):
        return list(self._open().iterator(include_value=False))

    def value(self, index):
        return self._open().get(self.keys[index])


def parse_datum(value, path, key, layer=None):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as e:           # protobuf's DecodeError: the value is not a Datum
        raise NetdefError(path, None, layer, "record '%s' is not a Caffe Datum: %s" % (key, e)) from None
    return datum


def write_lmdb(path, records, map_size=1 << 40):
    """Write (key bytes, value bytes) pairs into a new LMDB folder at `path`, committing
    every 1000 records as convert_imageset does. Returns the number written."""
    lmdb = optional("lmdb", "lmdb", "writing an LMDB")
    env = lmdb.open(path, map_size=map_size, subdir=True)
    count = 0
    try:
        txn = env.begin(write=True)
        for key, value in records:
            txn.put(key, value)
            count += 1
            if count % 1000 == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
    finally:
        env.close()
    return count

"""netdef's own saved format, `.netdef`: a zip holding the net as prototxt text
(`net.prototxt`), its blobs as a Caffe `.caffemodel` (`weights.caffemodel`) and its format
version (`format`, a compiler.files stamp; files without one are version 0). Both are read
by the ordinary frontends; nothing is unpickled.

A .netdef may come from anyone, so the zip is read as hostile: the entries' declared sizes
are checked against the memory budget before anything is decompressed (a 2 MB file can
declare gigabytes), no more than the declared bytes are ever inflated, and an encrypted
entry, an unknown compression method, corrupt deflate data or a bad CRC is a one-line error
naming the file and the entry.
"""
import zipfile
import zlib

from compiler.accounting import MEMORY_ENV, human_bytes, memory_budget
from compiler.errors import NetdefError
from compiler.files import check_format, format_stamp, regular_file

SUFFIX = ".netdef"
NET_ENTRY = "net.prototxt"
WEIGHTS_ENTRY = "weights.caffemodel"
FORMAT_ENTRY = "format"
FORMAT_KIND = "saved"
FORMAT_VERSION = 1          # 0: no format entry (before versions); 1: with it
FORMAT_STAMP = format_stamp(FORMAT_KIND, FORMAT_VERSION)
# The methods netdef writes (DEFLATED) and the zip module reads without extra libraries.
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
CHUNK = 1 << 20


def read_saved(path, max_memory=None, weights=True):
    """-> (prototxt text, [LayerBlobs]). Entries larger than `max_memory` bytes (see
    accounting.memory_budget) together are refused before they are read. weights=False
    reads the net alone and gives None for its blobs: reading, checking, drawing or
    converting the net does not inflate and parse a weights entry of any size."""
    shown = str(path)
    regular_file(path, "saved net")

    def fail(message, hint=None):
        raise NetdefError(shown, None, None, "not a valid .netdef file: " + message, hint)

    try:
        with zipfile.ZipFile(path) as z:
            infos = {}
            for name in (FORMAT_ENTRY, NET_ENTRY) + ((WEIGHTS_ENTRY,) if weights else ()):
                try:
                    infos[name] = z.getinfo(name)
                except KeyError:
                    if name != FORMAT_ENTRY:
                        fail("it has no entry '%s'" % name)
            for name, info in infos.items():
                if info.flag_bits & 0x1:
                    fail("entry '%s' is encrypted" % name, "netdef writes and reads unencrypted .netdef files")
                if info.compress_type not in METHODS:
                    fail("entry '%s' uses compression method %d; netdef reads %s"
                         % (name, info.compress_type, " and ".join(METHODS.values())))
            budget = memory_budget(max_memory)
            declared = sum(info.file_size for info in infos.values())
            if declared > budget:
                fail("its entries declare %s, over the %s memory budget" % (human_bytes(declared), human_bytes(budget)),
                     "raise the budget with $%s if the file is genuine" % MEMORY_ENV)
            data = {name: _read_entry(z, info, fail) for name, info in infos.items()}
    except NetdefError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
            RuntimeError, ValueError) as e:
        fail(str(getattr(e, "strerror", None) or e))
    try:
        stamp = data[FORMAT_ENTRY].decode("utf-8") if FORMAT_ENTRY in data else None
        text = data[NET_ENTRY].decode("utf-8")
    except UnicodeDecodeError as e:
        fail("a text entry is not UTF-8 (%s)" % e.reason)
    check_format(stamp, FORMAT_KIND, FORMAT_VERSION, shown)
    if not weights:
        return text, None
    # Imported here: the pipeline imports this module to read any net, and the weights'
    # parser loads numpy, which reading a prototxt does not need.
    from compiler.frontends import caffemodel
    return text, caffemodel.parse_caffemodel(data[WEIGHTS_ENTRY], shown)


def _read_entry(z, info, fail):
    """The entry's bytes, inflating at most its declared size: an entry that holds more
    than its header says is refused after one byte more, not read to the end. A bytearray
    keeps the arrays that view the weights writable (see caffemodel.read_caffemodel)."""
    out = bytearray()
    with z.open(info) as f:
        while len(out) <= info.file_size:
            chunk = f.read(min(CHUNK, info.file_size + 1 - len(out)))
            if not chunk:
                break
            out += chunk
    if len(out) != info.file_size:
        fail("entry '%s' holds %s bytes, its header says %d" % (info.filename, "more" if len(out) > info.file_size
                                                                else len(out), info.file_size))
    return out

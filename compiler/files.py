"""The files netdef reads: what may be read at all, and the format versions of its own.

Every file a command reads (a net, weights, --input arrays) is first looked at with
os.stat, which neither opens nor blocks: only a regular file is read. /dev/zero would be
read forever, a FIFO blocks in open() until someone writes, and a directory or a socket is
no net; a symlink loop fails in stat itself. Each is a one-line error naming the file.

Formats that are netdef's own (the `.netdef` zip, safetensors metadata, the training
snapshot's side file) carry a stamp "netdef-<kind> <version>" that their readers check
with `check_format`: a file from a newer netdef is refused with a message saying so,
instead of being misread. A file without a stamp was written before versions (version 0).
"""
import os
import re
import stat

from compiler.errors import NetdefError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def regular_file(path, what="file"):
    """os.stat_result of `path` if it is a regular file (symlinks followed); else a
    NetdefError saying what it is. Call before opening: it never blocks or reads."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise NetdefError(str(path), None, None, "cannot read the %s: %s" % (what, e.strerror or e)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise NetdefError(str(path), None, None, "the %s is %s, not a regular file" % (what, kind),
                          "netdef reads nets, weights and inputs from regular files only")
    return st


def format_stamp(kind, version):
    """The text that marks a file as netdef's format `kind` at `version`: "netdef-saved 1"."""
    return "netdef-%s %d" % (kind, version)


def check_format(stamp, kind, newest, file):
    """The version in `stamp` (a format_stamp, or None/"" for a file written before
    versions: 0). Refuses another kind, an unreadable stamp and a version above `newest`,
    the one this netdef writes."""
    if not stamp:
        return 0
    m = re.fullmatch(r"netdef-([\w.-]+) (\d{1,9})", stamp.strip())
    if m is None or m.group(1) != kind:
        raise NetdefError(str(file), None, None, "not a netdef-%s file: its format stamp is %r"
                          % (kind, stamp[:80]))
    version = int(m.group(2))
    if version > newest:
        raise NetdefError(str(file), None, None, "written by a newer netdef: netdef-%s format %d, and this "
                          "netdef reads formats up to %d" % (kind, version, newest),
                          "upgrade netdef (pip install -U netdef) to read it")
    return version

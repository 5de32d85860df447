"""The list files of Caffe's data layers, parsed exactly as Caffe parses them.

ImageData and convert_imageset read `path label` lines with std::getline and split each at
its LAST space (`line.find_last_of(' ')`), so a path may contain spaces; the label is
`atoi` of the rest (leading white space skipped, digits up to the first non-digit, 0 when
there are none, so a CRLF line's trailing '\\r' is harmless). A line without a space makes
Caffe look for a file named like the whole line: netdef refuses it with the list file and
line. HDF5Data reads its list with `source_file >> line`: white-space separated names.
"""
from compiler.errors import NetdefError


def atoi(text):
    """C's atoi: optional leading white space and sign, then decimal digits."""
    text = text.lstrip(" \t\n\v\f\r")
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if not "0" <= ch <= "9":
            break
        digits += ch
    return sign * int(digits) if digits else 0


def read_image_list(path, layer=None):
    """A `path label` list file -> [(path, label, line number)]."""
    data = _read(path, layer, "image list")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()                      # the newline that ends the last line
    items = []
    for number, line in enumerate(lines, 1):
        pos = line.rfind(" ")
        if pos < 0:
            raise NetdefError(path, number, layer, "no space before a label in %r: Caffe splits each "
                              "line at its last space into a file name and a label" % line.rstrip("\r"),
                              "write `<file> <label>` on every line")
        items.append((line[:pos], atoi(line[pos + 1:]), number))
    if not items:
        raise NetdefError(path, None, layer, "the image list is empty", "write one `<file> <label>` line per image")
    return items


def read_name_list(path, layer=None):
    """HDF5Data's list: the white-space separated file names of `path`."""
    names = _read(path, layer, "HDF5 file list").split()
    if not names:
        raise NetdefError(path, None, layer, "the HDF5 file list is empty", "write one .h5 file name per line")
    return names


def _read(path, layer, what):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise NetdefError(path, None, layer, "%s '%s' does not exist" % (what, path),
                          "paths in a data layer are relative to the working directory, as in Caffe") from None
    except OSError as e:
        raise NetdefError(path, None, layer, "cannot read %s: %s" % (what, e.strerror or e)) from None

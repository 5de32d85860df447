"""netdef's own saved format, `.netdef`: a zip holding the net as prototxt text
(`net.prototxt`) and its blobs as a Caffe `.caffemodel` (`weights.caffemodel`). Both are
read by the ordinary frontends; nothing is unpickled."""
import zipfile

from compiler.errors import NetdefError
from compiler.frontends import caffemodel

SUFFIX = ".netdef"
NET_ENTRY = "net.prototxt"
WEIGHTS_ENTRY = "weights.caffemodel"


def read_saved(path):
    """-> (prototxt text, [LayerBlobs])"""
    try:
        with zipfile.ZipFile(path) as z:
            text = z.read(NET_ENTRY).decode("utf-8")
            # A bytearray keeps the arrays that view it writable (see read_caffemodel).
            weights = bytearray(z.read(WEIGHTS_ENTRY))
    except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise NetdefError(str(path), None, None, "not a valid .netdef file: %s" % e) from None
    return text, caffemodel.parse_caffemodel(weights, str(path))

"""Images, Datum records and mean files, decoded as Caffe decodes them.

Caffe decodes with OpenCV (caffe/util/io.cpp), so netdef does too (opencv-python-headless,
the `data` extra): pixels in BGR order; `is_color: false` is IMREAD_GRAYSCALE, which for a
colour PNG is libpng's own `(9797 R + 19234 G + 3737 B) >> 15` and for a JPEG the decoder's
Y channel, not cv::cvtColor; alpha is dropped without compositing; a resize is
`cv::resize(img, Size(new_width, new_height))` with its default INTER_LINEAR (OpenCV's
fixed-point bilinear, which takes the INTER_AREA path for an exact 2x downscale). Any other
decoder or resize differs from Caffe by a level on some pixels.

Images come back as HxWxC uint8 arrays, as cv::Mat holds them; a raw Datum as the CxHxW
array it stores (uint8 `data` or float `float_data`).
"""
import importlib

import numpy as np

from compiler.errors import NetdefError
from compiler.proto import caffe_pb2

EXTRA_HINT = "install the data extra: pip install 'netdef[data]'"


def optional(module, package, what):
    """Import an optional dependency, or say which package `what` needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NetdefError(None, None, None, "%s needs the Python package %s" % (what, package),
                          EXTRA_HINT) from None


def cv2():
    return optional("cv2", "opencv-python-headless", "decoding images as Caffe does")


class ImageError(Exception):
    """An image file or encoded record that OpenCV cannot decode."""


def read_image(path, new_height=0, new_width=0, is_color=True):
    """Caffe's ReadImageToCVMat: imread (colour or gray), then cv::resize when both sizes
    are set. Raises ImageError for a missing or undecodable file."""
    cv = cv2()
    img = cv.imread(path, cv.IMREAD_COLOR if is_color else cv.IMREAD_GRAYSCALE)
    if img is None:
        raise ImageError("cannot read image '%s' (missing, unreadable or not an image)" % path)
    return _resized(img, new_height, new_width)


def decode_image(data, is_color=None, new_height=0, new_width=0):
    """cv::imdecode of encoded bytes: is_color True/False forces 3 or 1 channels
    (IMREAD_COLOR / IMREAD_GRAYSCALE), None keeps the file's own (IMREAD_UNCHANGED), as
    Caffe's DecodeDatumToCVMat(Native) do."""
    cv = cv2()
    flag = cv.IMREAD_UNCHANGED if is_color is None else (cv.IMREAD_COLOR if is_color else cv.IMREAD_GRAYSCALE)
    img = cv.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        raise ImageError("cannot decode the encoded image")
    if img.dtype != np.uint8:
        raise ImageError("the encoded image has %s pixels; Caffe's transformer takes 8-bit images only" % img.dtype)
    return _resized(img, new_height, new_width)


def _resized(img, new_height, new_width):
    if new_height > 0 and new_width > 0:
        img = cv2().resize(img, (new_width, new_height))
    return img[:, :, None] if img.ndim == 2 else img


def datum_array(datum, force_color=False, force_gray=False):
    """A Datum -> CxHxW array: an encoded one decoded (its own channel count unless
    force_color/force_gray, as Caffe's DataTransformer), a raw one as stored (uint8 from
    `data`, else float32 from `float_data`)."""
    if datum.encoded:
        img = decode_image(datum.data, True if force_color else False if force_gray else None)
        return img.transpose(2, 0, 1)
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if datum.data:
        values = np.frombuffer(datum.data, np.uint8)
    else:
        values = np.asarray(datum.float_data, np.float32)
    if count == 0 or values.size != count:
        raise ImageError("the record holds %d values for its %dx%dx%d shape" % ((values.size,) + shape))
    return values.reshape(shape)


def image_datum(img, label):
    """Caffe's CVMatToDatum: an HxWxC uint8 image as a raw Datum (planes in C order)."""
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = img.shape[2], img.shape[0], img.shape[1]
    datum.data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()
    datum.encoded = False          # set, not defaulted: convert_imageset's values carry the field
    datum.label = label
    return datum


def read_mean(path, layer=None):
    """A mean .binaryproto (BlobProto, legacy num/channels/height/width or shape) -> CxHxW
    float32."""
    blob = caffe_pb2.BlobProto()
    try:
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
    except FileNotFoundError:
        raise NetdefError(path, None, layer, "mean file '%s' does not exist" % path,
                          "paths in a data layer are relative to the working directory, as in Caffe") from None
    except Exception as e:       # protobuf's DecodeError and OSError alike: not a BlobProto
        raise NetdefError(path, None, layer, "cannot read the mean file: %s" % e) from None
    dims = list(blob.shape.dim) if blob.HasField("shape") else [blob.num, blob.channels, blob.height, blob.width]
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    data = np.asarray(blob.data, np.float32)
    if len(dims) != 3 or data.size != int(np.prod(dims)):
        raise NetdefError(path, None, layer, "the mean file is not a 1xCxHxW blob (shape %s, %d values)"
                          % (dims, data.size), "write it with `netdef data compute-mean`")
    return data.reshape(dims)


def mean_blob(mean):
    """A CxHxW float32 mean as compute_image_mean writes it: legacy num/channels/height/width."""
    blob = caffe_pb2.BlobProto()
    blob.num, (blob.channels, blob.height, blob.width) = 1, mean.shape
    blob.data.extend(mean.ravel().tolist())
    return blob

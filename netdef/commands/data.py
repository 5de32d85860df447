"""netdef data convert-imageset ROOT LIST DB [--resize-height H --resize-width W --gray
                                           --shuffle --encoded --encode-type png|jpg]
netdef data compute-mean DB -o mean.binaryproto
netdef data pca-color (DB | LIST --root ROOT) -o pca.json

Caffe's convert_imageset and compute_image_mean, writing what they write:

- convert-imageset: one Datum per `path label` line of LIST (split at the last space, as
  Caffe), key `%08d_<path>` (the line's index after shuffling), value the serialized Datum:
  raw (channels, height, width, the BGR planes, encoded false, label), or with --encoded the
  image file's own bytes when no resize or colour change is needed and its extension is the
  encoding, else the image re-encoded by OpenCV. Caffe's Data layer reads the result.
  --shuffle permutes the lines with --seed (Caffe's is unseeded). A missing or undecodable
  image stops the conversion with its list line (Caffe skips it with a warning); nothing is
  left behind: the database is written under a temporary name and renamed at the end.
- compute-mean: the float32 sum of every record's values (encoded records decoded with
  their own channel count), divided by the record count in float32, written as a BlobProto
  with legacy num/channels/height/width; it prints the per-channel means, as Caffe does.

- pca-color (netdef's own): the eigenvalues and eigenvectors of the 3x3 covariance of all
  pixel values (on the [0, 1] scale, channels in the images' B, G, R order) of an LMDB or
  an image list, as JSON, computed once for the PCA colour augmentation
  (transform_param { netdef_augment { pca_file: "pca.json" } }, netdef/data/augment.py).

All three report progress on standard error every 1000 images.
"""
import os
import shutil
import sys
import tempfile

from compiler.errors import NetdefError
from netdef.commands import write_atomic

PROGRESS_EVERY = 1000


def add_parser(sub):
    p = sub.add_parser("data", help="data tools: convert-imageset, compute-mean (as Caffe's)")
    tools = p.add_subparsers(dest="tool", required=True)
    c = tools.add_parser("convert-imageset", help="write an LMDB of Datum records from an image list")
    c.add_argument("root", help="folder prepended (as a plain string) to each listed path")
    c.add_argument("list", help="list file of `path label` lines")
    c.add_argument("db", help="LMDB folder to create (must not exist)")
    c.add_argument("--resize-height", type=int, default=0)
    c.add_argument("--resize-width", type=int, default=0)
    c.add_argument("--gray", action="store_true", help="decode as one gray channel")
    c.add_argument("--shuffle", action="store_true", help="permute the lines (with --seed)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--encoded", action="store_true", help="store encoded images, not raw pixels")
    c.add_argument("--encode-type", choices=["png", "jpg"], default="",
                   help="with --encoded: re-encode as this (default: each file's own format)")
    c.set_defaults(tool_run=convert_imageset)
    m = tools.add_parser("compute-mean", help="the mean image of an LMDB, as a mean.binaryproto")
    m.add_argument("db", help="LMDB folder of Datum records")
    m.add_argument("-o", "--output", required=True, help="mean .binaryproto to write")
    m.set_defaults(tool_run=compute_mean)
    c = tools.add_parser("pca-color", help="eigen-decomposition of the pixel colours, for PCA colour augmentation")
    c.add_argument("source", help="LMDB folder, or a `path label` list file (with --root)")
    c.add_argument("--root", default="", help="folder prepended to the list's paths")
    c.add_argument("-o", "--output", required=True, help="JSON file to write")
    c.set_defaults(tool_run=pca_color)
    return p


def run(args):
    return args.tool_run(args)


def _progress(done, total=None, final=False):
    if final or done % PROGRESS_EVERY == 0:
        print("processed %d%s images" % (done, " of %d" % total if total else ""), file=sys.stderr, flush=True)


def _match_ext(path, encoding):
    """Caffe's matchExt: the file's extension (lower case) is the encoding (jpeg = jpg)."""
    ext = path.rsplit(".", 1)[-1].lower()
    return ext == encoding or (encoding == "jpg" and ext == "jpeg")


def datum_value(root, path, label, height, width, is_color, encoding):
    """The serialized Datum convert_imageset writes for one list line (ReadImageToDatum)."""
    from compiler.proto import caffe_pb2
    from netdef.data import codec
    img = codec.read_image(root + path, height, width, is_color)
    if not encoding:
        return codec.image_datum(img, label).SerializeToString()
    datum = caffe_pb2.Datum()
    if (img.shape[2] == 3) == is_color and not height and not width and _match_ext(path, encoding):
        with open(root + path, "rb") as f:
            datum.data = f.read()
    else:
        ok, buf = codec.cv2().imencode("." + encoding, img)
        if not ok:
            raise codec.ImageError("OpenCV cannot encode '%s' as %s" % (root + path, encoding))
        datum.data = buf.tobytes()
    datum.label, datum.encoded = label, True
    return datum.SerializeToString()


def convert_imageset(args):
    import numpy as np
    from netdef.data import codec
    from netdef.data.db import write_lmdb
    from netdef.data.lists import read_image_list
    if (args.resize_height > 0) != (args.resize_width > 0):
        raise NetdefError(None, None, None, "--resize-height and --resize-width go together")
    if os.path.exists(args.db):
        raise NetdefError(args.db, None, None, "'%s' already exists" % args.db,
                          "convert-imageset creates a new database: remove it or choose another name")
    codec.optional("lmdb", "lmdb", "writing an LMDB")
    items = read_image_list(args.list)
    if args.shuffle:
        items = [items[i] for i in np.random.default_rng(args.seed).permutation(len(items))]
    is_color = not args.gray

    def records():
        for index, (path, label, line) in enumerate(items):
            enc = (args.encode_type or path.rsplit(".", 1)[-1].lower()) if args.encoded else ""
            try:
                value = datum_value(args.root, path, label, args.resize_height, args.resize_width, is_color, enc)
            except codec.ImageError as e:
                raise NetdefError(args.list, line, None, str(e)) from None
            yield ("%08d_%s" % (index, path)).encode("utf-8", "surrogateescape"), value
            _progress(index + 1, len(items))

    parent = os.path.dirname(os.path.abspath(args.db))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".convert-")
    try:
        count = write_lmdb(os.path.join(tmp, "db"), records())
        os.replace(os.path.join(tmp, "db"), args.db)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _progress(count, final=True)
    print("wrote %d records to %s" % (count, args.db))
    return 0


def compute_mean(args):
    import numpy as np
    from netdef.data import codec
    from netdef.data.db import LMDB, open_db
    db = open_db(args.db, LMDB)
    total, first = None, None
    for index in range(len(db)):
        try:
            values = codec.datum_array(db.datum(index)).astype(np.float32)
        except codec.ImageError as e:
            raise NetdefError(args.db, None, None, "record '%s': %s" % (db.key(index), e)) from None
        if total is None:
            total, first = np.zeros_like(values), values.shape
        elif values.shape != first:
            raise NetdefError(args.db, None, None, "record '%s' is %s but the first record is %s"
                              % (db.key(index), "x".join(map(str, values.shape)), "x".join(map(str, first))),
                              "a mean needs records of one size: convert with --resize-height/--resize-width")
        total += values
        _progress(index + 1, len(db))
    mean = total / np.float32(len(db))
    _progress(len(db), final=True)
    blob = codec.mean_blob(mean)
    write_atomic(args.output, lambda tmp: open(tmp, "wb").write(blob.SerializeToString()))
    for c in range(mean.shape[0]):
        print("mean_value channel [%d]: %s" % (c, float(mean[c].astype(np.float64).mean())))
    return 0


def _source_images(source, root):
    """CxHxW arrays of every image of an LMDB folder or an image list, with progress."""
    from netdef.data import codec
    from netdef.data.db import LMDB, open_db
    from netdef.data.lists import read_image_list
    if os.path.isdir(source):
        db = open_db(source, LMDB)
        total = len(db)
        read = (lambda i: codec.datum_array(db.datum(i)))
    else:
        items = read_image_list(source)
        total = len(items)
        read = (lambda i: codec.read_image(root + items[i][0]).transpose(2, 0, 1))
    for index in range(total):
        try:
            yield read(index)
        except codec.ImageError as e:
            raise NetdefError(source, None if os.path.isdir(source) else items[index][2], None, str(e)) from None
        _progress(index + 1, total)
    _progress(total, final=True)


def pca_color(args):
    import json
    from netdef.data.augment import pca_of
    values, vectors = pca_of(_source_images(args.source, args.root))
    doc = {"what": "eigen-decomposition of the pixel covariance (values on the [0, 1] scale) of %s"
                   % args.source,
           "channels": "image order (B, G, R for colour images)",
           "eigenvalues": values.tolist(), "eigenvectors": vectors.tolist()}
    write_atomic(args.output, lambda tmp: open(tmp, "w").write(json.dumps(doc, indent=1) + "\n"))
    print("eigenvalues %s; wrote %s" % (", ".join("%.6g" % v for v in values), args.output))
    return 0

"""netdef features NET --weights W --blob BLOB -o DIR [--images LIST]

Cache a frozen trunk's features (netdef/inference/features.py): NET runs once over its
data (a train_val's TEST data layer, or a deploy net's images from --images, a Caffe
`path label` list, preprocessed as predict preprocesses them) and BLOB is stored with the
labels in .npy shards under DIR, with DIR/list.txt naming them: the source of an HDF5Data
layer with tops `data` and `label` in the head's training net. DIR is written whole or not
at all."""
import os
import shutil
import tempfile

from compiler.errors import NetdefError
from netdef.commands import add_net_arguments, add_weights_arguments, parse_net, weights_arguments


def add_parser(sub):
    from netdef.commands.predict import add_preprocessing_arguments
    p = sub.add_parser("features", help="store a blob over a data set (with its labels) for training a head")
    add_net_arguments(p)
    add_weights_arguments(p, "the trained weights of the trunk")
    p.add_argument("--blob", required=True, help="the blob to store (the trunk's last layer)")
    p.add_argument("--images", metavar="LIST", help="a deploy net's data: a `path label` list, one image a line")
    p.add_argument("--batch", type=int, default=32, help="images per forward pass with --images (default 32)")
    add_preprocessing_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the cache folder to create")
    return p


def run(args):
    import time
    import netdef
    from netdef.inference.features import write_cache
    target = os.path.abspath(args.output)
    if os.path.exists(target):
        raise NetdefError(args.output, None, None, "the output folder exists", "give a new folder name")
    if not os.path.isdir(os.path.dirname(target)):
        raise NetdefError(args.output, None, None, "cannot write: the folder %s does not exist"
                          % os.path.dirname(target))
    weights, strict = weights_arguments(args)
    if weights is None:
        raise NetdefError(args.net, None, None, "features of an untrained trunk mean nothing: give --weights")
    start = time.perf_counter()
    batches, total, net = (_image_batches(args) if args.images else _data_batches(args))
    if args.blob not in net.blob_order:
        raise NetdefError(args.net, None, None, "no blob named %s in the net" % args.blob)
    gm = netdef.compile_net(net, weights, outputs=[args.blob], strict=strict).eval()
    names = netdef.record(gm).input_names

    def features():
        import torch
        with torch.no_grad():
            for arrays, labels in batches:
                out = gm(*[torch.from_numpy(arrays[n]) for n in names])[args.blob]
                yield out.numpy(), labels

    tmp = tempfile.mkdtemp(prefix=".netdef-features-", dir=os.path.dirname(target))
    try:
        shards = write_cache(tmp, features(), total, listed_as=args.output)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print("wrote %d rows of %s (%s each) in %d shard(s) to %s in %.1f s" % (
        total, args.blob, "x".join(map(str, net.shape(args.blob)[1:])), shards, args.output,
        time.perf_counter() - start))
    return 0


def _data_batches(args):
    """The TEST data layer's batches, each item once -> (iterator of (inputs, labels), rows, net)."""
    from netdef.data.feed import NetData
    net = parse_net(args)
    data = NetData(net)
    if not data.sources:
        raise NetdefError(args.net, None, None, "the net has no data layer", "give a deploy net --images LIST")
    source = data.sources[0]
    if len(source.tops) < 2:
        raise NetdefError(net.file, None, source.name, "the data layer has no label top",
                          "the cache stores the labels with the features")
    passes = -(-len(source) // source.batch_size)
    label = source.tops[1]
    return ((b, b[label]) for b in map(data.batch, range(passes))), len(source), net


def _image_batches(args):
    """The listed images, preprocessed as predict does, `--batch` at a time."""
    import numpy as np
    from netdef.commands.predict import preprocessor
    from netdef.data.lists import read_image_list
    if args.batch < 1:
        raise NetdefError(args.net, None, None, "--batch must be at least 1, got %d" % args.batch)
    items = read_image_list(args.images)
    if not items:
        raise NetdefError(args.images, None, None, "the image list is empty")
    net = parse_net(args)
    prep = preprocessor(args, net)
    first = prep.crops(items[0][0], 1)
    name = net.blobs[net.inputs[0]].name
    net = parse_net(args, {name: (args.batch,) + first.shape[1:]})

    def batches():
        for k in range(0, len(items), args.batch):
            chunk = items[k:k + args.batch]
            rows = [prep.crops(path, 1)[0] for path, _, _ in chunk]
            rows += [rows[-1]] * (args.batch - len(rows))      # the last pass is filled up, then trimmed
            yield {name: np.stack(rows)}, np.float32([label for _, label, _ in chunk])
    return batches(), len(items), net

"""Subcommands of the `netdef` CLI, and the argument helpers they share."""
import argparse
import os
import shutil
import tempfile
import unicodedata
import warnings

from compiler.errors import NetdefWarning


def parse_input_shapes(values):
    """["data=1,3,224,224", "im_info=1,3"] -> {"data": (1, 3, 224, 224), ...}"""
    shapes = {}
    for value in values or []:
        for item in value.split(";"):
            name, sep, dims = item.partition("=")
            try:
                if not sep or not name:
                    raise ValueError
                shapes[name.strip()] = tuple(int(d) for d in dims.replace("x", ",").split(","))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    "--input-shape takes NAME=N,C,H,W (e.g. data=1,3,224,224), got %r" % item) from None
    return shapes


def add_net_arguments(p):
    """The arguments that choose a net and its state: file, phase, stages, level, input shapes."""
    p.add_argument("net", help="network file: .prototxt, .net (netdef DSL) or .netdef")
    p.add_argument("--net", dest="net_name", metavar="NAME",
                   help="which net of a .net file that declares several")
    p.add_argument("--phase", choices=["train", "test", "TRAIN", "TEST"], default="test")
    p.add_argument("--stage", action="append", default=[], help="NetState stage (repeatable)")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="override an input's shape (repeatable)")
    add_memory_argument(p)


def add_memory_argument(p):
    p.add_argument("--max-memory", type=memory_size, metavar="SIZE",
                   help="refuse nets whose blobs need more (a TRAIN net: a training step with its "
                        "gradients and solver history; e.g. 16G; default $NETDEF_MAX_MEMORY or 16G)")


def add_seed_argument(p):
    p.add_argument("--seed", type=int, help="seed of the randomness: the data layers' (shuffle, TRAIN crops "
                                            "and mirrors) and Dropout's in TRAIN (default: fixed)")


def seeded_data(net, seed):
    """The net's data layers (netdef.data.feed.NetData) drawing from `seed`, and torch's
    generator seeded with it too (Dropout's masks in TRAIN, fillers): a run repeats, and
    another --seed draws anew. None is the fixed default seed. (Caffe's tools seed only
    through a solver's random_seed: `caffe test` on a TRAIN net does not repeat.)"""
    import torch
    from netdef.data.feed import DEFAULT_SEED, NetData
    seed = DEFAULT_SEED if seed is None else seed
    torch.manual_seed(seed)
    return NetData(net, seed)


def add_weights_arguments(p, help):
    """--weights, and how strictly they must match the net."""
    p.add_argument("--weights", help=help)
    strictness = p.add_mutually_exclusive_group()
    strictness.add_argument("--strict", action="store_true",
                            help="layers of the weights that the net lacks, and layers of the net that the "
                                 "weights lack, are errors (by default, as in Caffe, the first are skipped and "
                                 "the second keep their filler values; both are reported)")
    strictness.add_argument("--no-strict", action="store_true",
                            help="deprecated: Caffe's matching is the default now")


def weights_arguments(args):
    """(weights, strict) as the arguments ask: a saved .netdef net brings its own weights."""
    from compiler.frontends import saved
    if args.no_strict:
        warnings.warn("--no-strict is deprecated: it is the default now, and will be removed", NetdefWarning)
    weights = args.weights
    if weights is None and str(args.net).endswith(saved.SUFFIX):
        weights = args.net
    return weights, args.strict


def memory_size(text):
    from compiler.accounting import parse_size
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def net_state(args):
    from compiler.state import NetState
    return NetState(args.phase, args.stage, args.level)


def parse_net(args, extra_shapes=None):
    from compiler import pipeline
    shapes = parse_input_shapes(args.input_shape)
    shapes.update(extra_shapes or {})
    return pipeline.build(args.net, net_state(args), shapes, args.max_memory, args.net_name)


def read_and_check(args):
    """The net the arguments choose, wired and shaped as far as it goes, and every problem
    found in it (check and draw show them all instead of stopping at the first)."""
    from compiler import pipeline
    state = net_state(args)
    net = pipeline.read(args.net, args.net_name)
    return net, pipeline.check(net, state, parse_input_shapes(args.input_shape), args.max_memory)


def add_device_arguments(p):
    """Where and how a computing verb (train, test, time, run) runs: --device, Caffe's --gpu,
    --precision and --channels-last. resolve_device(args) turns them into a torch.device;
    netdef.devices applies precision and memory format."""
    g = p.add_argument_group("device")
    g.add_argument("--device", metavar="D", help="cpu, cuda or cuda:N (default: cpu)")
    g.add_argument("--gpu", metavar="N", help="Caffe's spelling of --device cuda:N")
    g.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="autocast to bf16 or fp16 (fp16 training scales the loss); default fp32")
    g.add_argument("--channels-last", action="store_true",
                   help="keep 4-d weights and inputs in channels_last memory format")


def resolve_device(args):
    """The torch.device that --device / --gpu choose (cpu when neither is given). Caffe's
    `--gpu 0,1` or `--gpu all` trains on several GPUs in one process; netdef does that with
    torchrun, so --gpu takes one index. Raises NetdefError when the device is not there."""
    from netdef.devices import parse_device
    if args.gpu is not None:
        if args.device is not None:
            raise argparse.ArgumentTypeError("give --device or --gpu, not both")
        if not args.gpu.isdigit():
            raise argparse.ArgumentTypeError(
                "--gpu takes one device index (got %r); for several GPUs run "
                "'torchrun --nproc_per_node N netdef train ...'" % args.gpu)
        return parse_device("cuda:" + args.gpu)
    return parse_device(args.device or "cpu")


def refuse_input_as_output(path, inputs):
    """An output that is one of the command's input files (same inode, whatever the
    spelling or link) is refused: writing it would destroy what the command reads."""
    from compiler.errors import NetdefError
    for source in inputs:
        if source and os.path.exists(source) and os.path.exists(path) and os.path.samefile(source, path):
            raise NetdefError(str(path), None, None, "the output is the input file %s; writing it would "
                              "destroy the input" % source, "choose another output file")


def check_output(path, inputs=()):
    """The real path `path` would be written at, or a NetdefError: a directory, one of the
    command's input files, a folder that does not exist. write_atomic checks this; a
    command that writes several files checks them all before it writes the first."""
    from compiler.errors import NetdefError
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise NetdefError(str(path), None, None, "the output is a directory", "give a file name")
    refuse_input_as_output(path, inputs)
    if not os.path.isdir(os.path.dirname(target)):
        raise NetdefError(str(path), None, None, "cannot write: the folder %s does not exist"
                          % os.path.dirname(target))
    return target


def write_atomic(path, write, inputs=()):
    """Write `path` so that no failure leaves a partial, stray or damaged file behind.

    `write(tmp)` writes the content to the temporary path it is given (same suffix as
    `path`). A regular file (or none) is replaced by rename after fsync, so readers see the
    old file or the whole new one. A symlink is written through (its target is replaced,
    the link stays); a device or FIFO (`-o /dev/null`, `-o /dev/stdout`) is written into,
    never renamed over. `inputs` are the files the command read: an output that is one of
    them (same inode) is refused before anything is written. Every failure (a directory,
    a missing or read-only folder, a full disk) is a NetdefError naming the output."""
    import stat
    from compiler.errors import NetdefError
    shown = str(path)
    target = check_output(path, inputs)
    directory = os.path.dirname(target)
    special = os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode)
    tmp = None
    try:
        # A device or FIFO gets the content from a temporary file elsewhere, then written into it.
        fd, tmp = tempfile.mkstemp(dir=None if special else directory,
                                   suffix=os.path.splitext(target)[1] or ".tmp", prefix=".netdef-")
        os.close(fd)
        if special:
            write(tmp)
            with open(tmp, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 less umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise NetdefError(shown, None, None, "cannot write: %s" % (e.strerror or e)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def printable(text):
    """`text` with each control or format character but newline and tab written as a Python
    escape (\\x1b, \\u202e): messages quote the names of the user's files, and Caffe allows
    any name, so a name must not move the cursor, retitle the terminal or reverse text."""
    return "".join(c if c in "\n\t" or unicodedata.category(c)[0] != "C" else
                   ascii(c)[1:-1] for c in text)

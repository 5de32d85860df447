"""The `netdef` command.

    netdef compile NET [--weights W] [--phase train|test] [--input-shape data=1,3,224,224] [-o OUT]
    netdef run NET --weights W --input in.npz --output out.npz [--blobs all|outputs]

Exit codes: 0 ok, 1 an error in the user's input (one located message, no traceback
unless --debug), 2 bad usage.
"""
import argparse
import os
import sys
import tempfile

from compiler.errors import NetdefError


def parse_input_shapes(values):
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


def _common(p):
    p.add_argument("net", help="network file: .prototxt, .net (netdef DSL) or .netdef")
    p.add_argument("--phase", choices=["train", "test", "TRAIN", "TEST"], default="test")
    p.add_argument("--stage", action="append", default=[], help="NetState stage (repeatable)")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="override an input's shape (repeatable)")


def make_parser():
    parser = argparse.ArgumentParser(prog="netdef", description="Caffe-compatible network compiler.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="validate a net, build its module and print its layers")
    _common(p)
    p.add_argument("--weights", help=".caffemodel (or .netdef) to load")
    p.add_argument("--no-strict", action="store_true", help="load the weights that match, report the rest")
    p.add_argument("-o", "--output", help="save the compiled module (.netdef: prototxt + arrays, no pickle)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = sub.add_parser("run", help="run a forward pass on arrays from an .npz file")
    _common(p)
    p.add_argument("--weights", help=".caffemodel (or .netdef)")
    p.add_argument("--no-strict", action="store_true")
    p.add_argument("--input", required=True, help=".npz with one array per input blob")
    p.add_argument("--output", required=True, help=".npz to write, keys = Caffe blob names")
    p.add_argument("--blobs", choices=["all", "outputs"], default="outputs")
    return parser


def cmd_compile(args):
    import netdef
    from netdef.summary import print_summary
    net = netdef.parse(args.net, args.phase.upper(), parse_input_shapes(args.input_shape),
                       args.stage, args.level)
    gm = netdef.compile_net(net, args.weights, strict=not args.no_strict)
    print_summary(net, args.format)
    if args.output:
        _atomic(args.output, lambda tmp: netdef.save(gm, tmp))
        print("saved %s" % args.output)
    return 0


def cmd_run(args):
    import numpy as np
    import torch
    import netdef
    try:
        with np.load(args.input, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise NetdefError(args.input, None, None, "cannot read input arrays: %s" % e) from None
    shapes = parse_input_shapes(args.input_shape)
    shapes.update({k: v.shape for k, v in arrays.items()})
    net = netdef.parse(args.net, args.phase.upper(), shapes, args.stage, args.level)
    gm = netdef.compile_net(net, args.weights, outputs="all" if args.blobs == "all" else None,
                            strict=not args.no_strict)
    missing = [n for n in gm.input_names if n not in arrays]
    if missing:
        raise NetdefError(args.input, None, None, "no array for input blob(s) %s (the file has %s)"
                          % (", ".join(missing), ", ".join(arrays) or "none"))
    with torch.no_grad():
        out = gm(**{n: torch.from_numpy(np.ascontiguousarray(arrays[n], dtype=np.float32))
                    for n in gm.input_names})
    result = {k: v.detach().cpu().numpy() for k, v in out.items()}
    _atomic(args.output, lambda tmp: np.savez(tmp, **result))
    print("wrote %d blobs to %s" % (len(result), args.output))
    return 0


def _atomic(path, write):
    """Write through a temporary file so that a failure leaves no partial output behind."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=os.path.splitext(path)[1] or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


COMMANDS = {"compile": cmd_compile, "run": cmd_run}


def main(argv=None):
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code
    try:
        return COMMANDS[args.command](args)
    except argparse.ArgumentTypeError as e:
        print("netdef: error: %s" % e, file=sys.stderr)
        return 2
    except NetdefError as e:
        if args.debug:
            raise
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

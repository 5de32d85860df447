"""netdef check NET [--weights W] [--input-shape ...] [--max-memory 16G] [--format text|json]

Validates a net without building a module and lists every problem, not only the first:
wiring (unknown bottoms, duplicate tops, in-place conflicts), shapes (with the bottoms'
shapes), unsupported layer types, the memory budget and, with --weights, each layer whose
blobs are missing or of the wrong shape. Exit 0 when the net is valid, 1 otherwise."""
import json

from compiler.errors import NetdefError, NetdefErrors
from netdef.commands import add_net_arguments, read_and_check


def add_parser(sub):
    p = sub.add_parser("check", help="list every problem of a net (and its weights) without building it")
    add_net_arguments(p)
    p.add_argument("--weights", help=".caffemodel (or .netdef) to check against the net")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: the problems as a list of {file, line, col, layer, message, hint}")
    return p


def run(args):
    from compiler.backends.summary import summarize
    from compiler.passes.validate import check_weights
    from netdef.api import read_weights
    try:
        net, errors = read_and_check(args)
        if args.weights and not errors:
            layers, file = read_weights(args.weights)
            errors = check_weights(net, layers, file)
    except NetdefError as e:      # the file itself cannot be read: nothing further to check
        errors = getattr(e, "errors", [e])
    if args.format == "json":
        print(json.dumps([e.to_dict() for e in errors], indent=1))
        return 1 if errors else 0
    if errors:
        raise NetdefErrors(errors)
    _, totals = summarize(net)
    print("ok: %s: %d layers, %s params, %s MACs per image%s" % (
        args.net, totals["layers"], "{:,}".format(totals["params"]), "{:,}".format(totals["macs"]),
        ", weights match" if args.weights else ""))
    return 0

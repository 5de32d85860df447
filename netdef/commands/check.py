"""netdef check NET [--weights W [--strict]] [--input-shape ...] [--max-memory 16G] [--format text|json]

Validates a net without building a module and lists every problem, not only the first:
wiring (unknown bottoms, duplicate tops, in-place conflicts), shapes (with the bottoms'
shapes), unsupported layer types, the memory budget and, with --weights, each blob of the
wrong count or shape. Layers of the net that the weights lack (they would keep their
filler values) and layers of the weights that the net lacks (Caffe skips them) are
warnings, or errors with --strict. Exit 0 when the net is valid, 1 otherwise."""
import json
import sys

from compiler.errors import NetdefError, NetdefErrors
from netdef.commands import add_net_arguments, add_weights_arguments, read_and_check, weights_arguments


def add_parser(sub):
    p = sub.add_parser("check", help="list every problem of a net (and its weights) without building it")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel (or .netdef) to check against the net")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: the problems as a list of {file, line, col, layer, message, hint, severity}")
    return p


def run(args):
    from compiler.backends.summary import summary_totals
    weights, warnings = None, []
    try:
        net, errors = read_and_check(args)
        weights, strict = weights_arguments(args)
        if weights and not errors:
            # Imported here: reading weights loads numpy, which checking a net alone does not need.
            from compiler.frontends.weights import read_weights
            from compiler.passes.weights import match_weights
            layers, file = read_weights(weights)
            warnings = match_weights(net, layers, file, strict)[1].problems(net)
    except NetdefError as e:      # a file cannot be read, or the weights do not fit
        errors = getattr(e, "errors", [e])
    if args.format == "json":
        print(json.dumps([dict(e.to_dict(), severity="error") for e in errors] +
                         [dict(w.to_dict(), severity="warning") for w in warnings], indent=1))
        return 1 if errors else 0
    if errors:
        raise NetdefErrors(errors)
    for w in warnings:          # one line each: the hints say how --strict would differ
        print("warning: %s" % str(w).splitlines()[0], file=sys.stderr)
    totals = summary_totals(net)
    print("ok: %s: %d layers, %s params, %s MACs per image%s" % (
        args.net, totals["layers"], "{:,}".format(totals["params"]), "{:,}".format(totals["macs"]),
        (", weights match" if not warnings else ", weights load with %d warning(s)" % len(warnings))
        if weights else ""))
    return 0

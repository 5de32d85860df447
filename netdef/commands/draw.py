"""netdef draw NET -o net.svg|net.png|net.pdf|net.dot|net.html [--rankdir TB|LR|BT|RL] [--show-lr-mult]

One box per layer (in-place layers folded into the layer they follow) with its type, key
parameters and output shape; .svg/.png/.pdf are rendered by Graphviz's `dot`, .dot is its
input, .html an offline page with pan, zoom, blocks and a details panel. A net with errors
still draws: its problems are printed as warnings and marked in red on their layers."""
import sys
from pathlib import Path

from compiler.errors import NetdefError
from netdef.commands import add_net_arguments, read_and_check, write_atomic

FORMATS = (".svg", ".png", ".pdf", ".dot", ".html")


def add_parser(sub):
    p = sub.add_parser("draw", help="draw a net as an image (Graphviz) or an interactive HTML page")
    add_net_arguments(p)
    p.add_argument("-o", "--output", required=True, help="file to write: " + ", ".join(FORMATS))
    p.add_argument("--rankdir", choices=["TB", "LR", "BT", "RL"], default="TB",
                   help="direction of the layout (default TB: inputs at the top)")
    p.add_argument("--show-lr-mult", action="store_true", help="show each layer's lr_mult values")
    return p


def run(args):
    from compiler.backends import draw
    suffix = Path(args.output).suffix.lower()
    if suffix not in FORMATS:
        raise NetdefError(args.output, None, None, "cannot draw to a '%s' file" % suffix,
                          "use one of " + ", ".join(FORMATS))
    net, errors = read_and_check(args)
    view = draw.build_view(net, errors)
    if suffix == ".html":
        content = draw.to_html(view, args.rankdir).encode("utf-8")
    else:
        dot = draw.to_dot(view, args.rankdir, args.show_lr_mult)
        content = dot.encode("utf-8") if suffix == ".dot" else draw.run_dot(dot, suffix[1:])
    write_atomic(args.output, lambda tmp: Path(tmp).write_bytes(content), inputs=[args.net])
    for e in errors:
        print("warning: %s" % e, file=sys.stderr)
    print("drew %d layers to %s%s" % (len(net.layers), args.output,
                                      " (%d problem(s) marked)" % len(errors) if errors else ""))
    return 0

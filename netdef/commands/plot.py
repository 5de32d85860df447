"""netdef plot LOG -o curves.png

Training curves from a training log: netdef's (`netdef train --log FILE`) or real Caffe's.
Needs matplotlib (`pip install 'netdef[plot]'`); without it the command says so and exits 1."""
import sys

from netdef.commands import write_atomic


def add_parser(sub):
    p = sub.add_parser("plot", help="plot loss, lr and test outputs of a training log")
    p.add_argument("log", help="training log: netdef train --log FILE, or Caffe's own log")
    p.add_argument("-o", "--output", required=True, help="image to write (.png, .svg or .pdf)")
    p.add_argument("--title", help="figure title (default: the log's file name)")
    return p


def run(args):
    import importlib.util
    import os
    from netdef.training.curves import plot, read_curves
    curves = read_curves(args.log)
    if importlib.util.find_spec("matplotlib") is None:
        print("error: netdef plot needs matplotlib, which is not installed: "
              "pip install 'netdef[plot]' (or pip install matplotlib)", file=sys.stderr)
        return 1
    write_atomic(args.output, lambda tmp: plot(curves, tmp, args.title or os.path.basename(args.log)),
                 inputs=[args.log])
    print("wrote %s: %d iterations, %d test net(s)" % (args.output, len(curves.loss.iterations),
                                                       len(curves.test_outputs)))
    return 0

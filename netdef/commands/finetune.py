"""netdef finetune NET --classes N [--weights W] [--head NAME] [--freeze all|none|LAYER]
                   [--labels labels.txt] -o NEW_NET

The net edited for fine-tuning (netdef/training/transfer.py): every classifier replaced by
a new layer of N outputs (named --head, or the old name + _ft) that learns 10x/20x faster,
and the layers up to --freeze frozen (lr_mult 0, decay_mult 0, BatchNorm on its stored
statistics). The output's format follows its suffix, as convert's: .prototxt or .net.
With --weights, the pretrained file is matched against the new net as `netdef train
--weights` will load it, and what it fills is reported. With --labels, the class names
are written beside the new net (NEW_NET's name with .labels.txt), where predict finds them.
"""
from pathlib import Path

from compiler.errors import NetdefError
from netdef.commands import check_output, memory_size, parse_input_shapes, write_atomic


def add_parser(sub):
    p = sub.add_parser("finetune", help="a net with new classifier heads and frozen layers, for fine-tuning")
    p.add_argument("net", help="the pretrained net: .prototxt (train_val or deploy), .net or .netdef")
    p.add_argument("--net", dest="net_name", metavar="NAME", help="which net of a .net file that declares several")
    p.add_argument("--classes", type=int, help="outputs of the new heads (default: the lines of --labels)")
    p.add_argument("--head", metavar="NAME", help="name of the new main classifier (default: old name + _ft)")
    p.add_argument("--freeze", default="all", metavar="all|none|LAYER",
                   help="freeze every layer but the new heads (all, the default), none, or the layers up to "
                        "and including LAYER")
    p.add_argument("--labels", metavar="labels.txt", help="class names, one a line; copied beside the new net")
    p.add_argument("--weights", help="the pretrained weights: checked against the new net and reported")
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="shape of an input or data top (repeatable), where netdef cannot read it")
    p.add_argument("--max-memory", type=memory_size, metavar="SIZE")
    p.add_argument("-o", "--output", required=True, help="the new net, .prototxt or .net")
    return p


def run(args):
    from compiler import pipeline
    from compiler.proto import caffe_pb2
    from netdef.commands.convert import net_text, output_format
    from netdef.inference.labels import labels_beside, read_labels
    from netdef.training import transfer
    output_format(args.output)          # a suffix netdef cannot write is refused before any work
    sources = [args.net] + [f for f in (args.weights, args.labels) if f]
    check_output(args.output, sources)
    labels = read_labels(args.labels) if args.labels else None
    classes = args.classes if args.classes is not None else len(labels or ())
    if args.classes is None and labels is None:
        raise NetdefError(args.net, None, None, "how many classes?", "give --classes N or --labels labels.txt")
    if labels is not None and len(labels) != classes:
        raise NetdefError(args.labels, None, None, "%d class names for --classes %d" % (len(labels), classes))
    if labels is not None:
        check_output(labels_beside(args.output), sources)
    net = pipeline.read(args.net, args.net_name)
    shapes = parse_input_shapes(args.input_shape)
    renames, frozen = transfer.finetune(net, classes, args.head, args.freeze, shapes, args.max_memory)
    proto = caffe_pb2.NetParameter(name=net.name)
    proto.layer.extend(layer.param for layer in net.layers)
    text = net_text(proto, args.net, args.output,
                    "netdef finetune (%d classes, --freeze %s)" % (classes, args.freeze))
    if args.weights:
        _report_weights(net, args.weights, shapes, args.max_memory)
    write_atomic(args.output, lambda tmp: Path(tmp).write_text(text), inputs=sources)
    for old, new in renames.items():
        print("head %s -> %s: %d outputs, lr_mult 10/20, starts from its fillers" % (old, new, classes))
    print("frozen: %d layers with weights%s" % (len(frozen), ", %s to %s" % (frozen[0], frozen[-1]) if frozen else ""))
    print("wrote %s" % args.output)
    if labels is not None:
        path = labels_beside(args.output)
        write_atomic(path, lambda tmp: Path(tmp).write_text("".join(l + "\n" for l in labels)), inputs=sources)
        print("wrote %s (%d class names)" % (path, len(labels)))
    return 0


def _report_weights(net, weights, shapes, max_memory):
    """Match the pretrained file against the new TRAIN net as training will load it: a
    blob that does not fit is an error now, not after the first iteration."""
    from compiler.passes.weights import match_weights
    from compiler.state import NetState
    from compiler.frontends.weights import read_weights
    from netdef.training.transfer import phase_net
    part = phase_net(net, NetState("TRAIN"), shapes, max_memory)
    layers, file = read_weights(weights)
    _, report = match_weights(part, layers, file, False)
    for line in report.lines():
        print(line)

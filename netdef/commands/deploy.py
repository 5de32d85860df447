"""netdef deploy TRAIN_VAL -o deploy.prototxt [--batch N] [--input-shape NAME=N,C,H,W]

The deploy net of a train_val (netdef/inference/deploy.py): its TEST net with an Input
where the data layers were (keeping their transform_param, which predict reads), without
losses and accuracies, and a Softmax "prob" where the SoftmaxWithLoss was. The output's
format follows its suffix, as convert's: .prototxt or .net."""
from pathlib import Path

from netdef.commands import check_output, memory_size, parse_input_shapes, write_atomic


def add_parser(sub):
    p = sub.add_parser("deploy", help="the deploy net of a train_val net (Input, no losses, Softmax output)")
    p.add_argument("net", help="the train_val net: .prototxt, .net or .netdef")
    p.add_argument("--net", dest="net_name", metavar="NAME", help="which net of a .net file that declares several")
    p.add_argument("--stage", action="append", default=[], help="NetState stage of the TEST net (repeatable)")
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="shape of a data top (repeatable), where netdef cannot read it from the data")
    p.add_argument("--max-memory", type=memory_size, metavar="SIZE")
    p.add_argument("--batch", type=int, help="batch size of the Input (default: the TEST data's)")
    p.add_argument("-o", "--output", required=True, help="the deploy net, .prototxt or .net")
    return p


def run(args):
    from compiler import pipeline
    from compiler.errors import NetdefError
    from compiler.state import NetState
    from netdef.commands.convert import net_text, output_format
    from netdef.inference.deploy import deploy
    output_format(args.output)
    check_output(args.output, [args.net])
    if args.batch is not None and args.batch < 1:
        raise NetdefError(args.net, None, None, "--batch must be at least 1, got %d" % args.batch)
    net = pipeline.build(args.net, NetState("TEST", args.stage, args.level), parse_input_shapes(args.input_shape),
                         args.max_memory, args.net_name)
    text = net_text(deploy(net, args.batch), args.net, args.output, "netdef deploy")
    write_atomic(args.output, lambda tmp: Path(tmp).write_text(text), inputs=[args.net])
    print("wrote %s" % args.output)
    return 0

"""netdef summary NET [--input-shape data=1,3,224,224] [--format table|csv|json]

Per layer: name, type, output shape, learnable parameters, MACs per image and activation
memory, with totals. Nothing is built or allocated: the numbers come from the shapes."""
from netdef.commands import add_net_arguments, parse_net, printable


def add_parser(sub):
    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs and memory, with totals")
    add_net_arguments(p)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return p


def run(args):
    from compiler.backends.summary import format_summary
    print(printable(format_summary(parse_net(args), args.format)))
    return 0

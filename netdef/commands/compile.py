"""netdef compile NET [--weights W] [--phase train|test] [--input-shape data=1,3,224,224] [-o OUT]"""
from netdef.commands import add_net_arguments, parse_net, write_atomic


def add_parser(sub):
    p = sub.add_parser("compile", help="validate a net, build its module and print its layers")
    add_net_arguments(p)
    p.add_argument("--weights", help=".caffemodel (or .netdef) to load")
    p.add_argument("--no-strict", action="store_true", help="load the weights that match, report the rest")
    p.add_argument("-o", "--output", help="save the compiled module (.netdef: prototxt + arrays, no pickle)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return p


def run(args):
    import netdef
    from netdef.summary import print_summary
    net = parse_net(args)
    gm = netdef.compile_net(net, args.weights, strict=not args.no_strict)
    print_summary(net, args.format)
    if args.output:
        write_atomic(args.output, lambda tmp: netdef.save(gm, tmp))
        print("saved %s" % args.output)
    return 0

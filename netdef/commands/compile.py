"""netdef compile NET [--weights W [--strict]] [--phase train|test] [--input-shape data=1,3,224,224] [-o OUT]
                  [--fast] [--export-caffemodel OUT.caffemodel [--export-prototxt OUT.prototxt]]"""
from netdef.commands import (add_net_arguments, add_weights_arguments, parse_net, printable, weights_arguments,
                             write_atomic)


def add_parser(sub):
    p = sub.add_parser("compile", help="validate a net, build its module and print its layers")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel (or .netdef) to load")
    p.add_argument("-o", "--output", help="save the compiled module (.netdef: prototxt + arrays, no pickle)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--fast", action="store_true",
                   help="inference fast path: fold BatchNorm/Scale into convolutions, channels_last")
    p.add_argument("--export-caffemodel", metavar="OUT.caffemodel",
                   help="write the module's weights as a Caffe .caffemodel")
    p.add_argument("--export-prototxt", metavar="OUT.prototxt",
                   help="write the net (the folded one with --fast) as a prototxt")
    return p


def run(args):
    import netdef
    from compiler.backends.summary import format_summary
    sources = [args.net] + ([args.weights] if args.weights else [])
    net = parse_net(args)
    weights, strict = weights_arguments(args)
    gm = netdef.compile_net(net, weights, strict=strict, fast=args.fast)
    print(printable(format_summary(netdef.record(gm).net, args.format)))
    if args.output:
        write_atomic(args.output, lambda tmp: netdef.save(gm, tmp), inputs=sources)
        print("saved %s" % args.output)
    if args.export_caffemodel:
        write_atomic(args.export_caffemodel, lambda tmp: netdef.export(gm, tmp), inputs=sources)
        print("wrote %s" % args.export_caffemodel)
    if args.export_prototxt:
        from pathlib import Path
        from compiler.backends.prototxt import net_to_text
        text = net_to_text(netdef.record(gm).net)
        write_atomic(args.export_prototxt, lambda tmp: Path(tmp).write_text(text), inputs=sources)
        print("wrote %s" % args.export_prototxt)
    return 0

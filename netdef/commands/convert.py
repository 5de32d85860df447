"""netdef convert IN [-o OUT] [--net NAME]

A prototxt (V1 or V2, legacy inputs) becomes a .net file in the netdef language; a .net
file becomes a prototxt. Either way the output defines the same layers (names, types,
parameters, connections, order), and convert checks that before writing: it reads its
own output back and compares the layers with the input's.
"""
from pathlib import Path

from google.protobuf import text_format

from compiler.errors import NetdefError
from netdef.commands import write_atomic


def add_parser(sub):
    p = sub.add_parser("convert", help="prototxt -> netdef language (.net), or .net -> prototxt")
    p.add_argument("input", help=".prototxt (to .net) or .net (to .prototxt)")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("--net", help="which net of a .net file that declares several")
    return p


def run(args):
    text = convert(args.input, args.net)
    if args.output:
        write_atomic(args.output, lambda tmp: Path(tmp).write_text(text))
        print("wrote %s" % args.output)
    else:
        print(text, end="")
    return 0


def convert(path, net=None):
    """A net file -> the text of the same net in the other format."""
    if Path(path).suffix == ".net":
        return net_to_prototxt(path, net)
    if net is not None:
        raise NetdefError(str(path), None, None, "--net chooses a net of a .net file; a prototxt holds one")
    return prototxt_to_net(path)


def net_to_prototxt(path, net=None):
    from compiler.backends.prototxt import strip_netdef_fields
    from compiler.frontends import dsl
    proto = strip_netdef_fields(dsl.load_proto(path, net))
    return "# Generated from %s (net \"%s\") by netdef convert; edit that file, not this one.\n%s" % (
        Path(path).name, proto.name, text_format.MessageToString(proto))


def prototxt_to_net(path):
    from compiler.backends.dsl_writer import to_dsl
    from compiler.frontends import dsl
    from compiler.frontends.prototxt import parse_net_text, read_text_file, upgrade_layers
    file = str(path)
    proto, lines = parse_net_text(read_text_file(path), file)
    layers = upgrade_layers(proto, file, lines)
    name = proto.name or Path(file).stem
    try:
        text = to_dsl(name, [l.param for l in layers], proto, Path(file).name)
    except NetdefError as e:
        e.file = file
        e.line = e.line or next((l.line for l in layers if l.name == e.layer), None)
        raise
    back = dsl.build_net(dsl.load_module(Path(file).with_suffix(".net"), text), name).to_proto()
    for mine, theirs in zip(back.layer, layers):
        if mine != theirs.param:
            raise NetdefError(file, theirs.line, theirs.name, "netdef convert cannot write this layer "
                              "faithfully (it would read back as %s)" % text_format.MessageToString(
                                  mine, as_one_line=True), "please report it with the prototxt")
    count = len(back.layer)
    del back.layer[:]
    for field in ("layer", "layers", "input", "input_dim", "input_shape"):
        proto.ClearField(field)
    proto.name = name
    if count != len(layers) or back != proto:
        raise NetdefError(file, None, None, "netdef convert cannot write this net faithfully (%d layers "
                          "read back for %d; net options %s)" % (count, len(layers),
                                                                 text_format.MessageToString(back, as_one_line=True)),
                          "please report it with the prototxt")
    return text

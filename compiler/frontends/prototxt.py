"""Caffe prototxt (text protobuf) -> NetParameter -> an unwired IR Net.

Parsing uses protobuf's text format with netdef's own schema, so unknown fields and
wrong value types are refused with file:line:col. Layer line numbers, which protobuf does
not keep, come from a light scan of the text for top-level `layer {` / `layers {` blocks.
Legacy inputs (`input` + `input_dim` / `input_shape`) become Input layers and V1 layers
are upgraded (frontends/upgrade.py), as Caffe does on load.
"""
import difflib
import re
from pathlib import Path

from google.protobuf import text_format

from compiler.errors import NetdefError
from compiler.files import regular_file
from compiler.frontends import brackets, plain_text
from compiler.ir import Net
from compiler.frontends.upgrade import upgrade_layers
from compiler.proto import caffe_pb2

# Refuse files larger than this before parsing: a prototxt of a 1000-layer net is ~1 MB.
MAX_PROTOTXT_BYTES = 64 << 20

# protobuf text also accepts < > as block delimiters, and [ ] around a repeated field's
# values (layer [{...}, {...}]).
_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}<>\[\]]|\n|[A-Za-z_][\w]*')



def tokens(text):
    """(match, line, offset where its line starts) of each token of protobuf text (names,
    brackets, strings, comments), in order: the one tokenizer of every scan that locates
    lines (layer blocks, unclosed brackets, a solver's fields)."""
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        if m.group() == "\n":
            line, line_start = line + 1, m.end()
        else:
            yield m, line, line_start


_LEGACY_INPUTS = ("input", "input_dim", "input_shape")


def _layer_lines(text):
    """Line numbers of the top-level `layer` and `layers` blocks, in file order, and of
    the first legacy net input field (`input`, `input_dim`, `input_shape`). In the list
    syntax, `layer [{...}, {...}]`, each block is a layer and is numbered by its `{`."""
    lines = {"layer": [], "layers": [], "input": []}
    depth = 0
    pending = None
    listed = None       # "layer" or "layers" inside a top-level [ ] of that field
    for m, line, _ in tokens(text):
        tok = m.group()
        if tok in "{<":
            if depth == 0 and pending:
                lines[pending[0]].append(pending[1])
            elif depth == 0 and listed:
                lines[listed].append(line)
            pending = None
            depth += 1
        elif tok == "[":
            if depth == 0:
                listed = pending and pending[0]
            pending = None
        elif tok == "]":
            if depth == 0:
                listed = None
        elif tok in "}>":
            depth -= 1
            pending = None
        elif depth == 0 and tok in ("layer", "layers"):
            pending = (tok, line)
        elif depth == 0 and tok in _LEGACY_INPUTS and not lines["input"]:
            lines["input"].append(line)       # where the legacy net inputs are declared
            pending = None
        elif tok[0] not in "#\"'":
            pending = None
    return lines


def parse_text(text, file, message):
    """Parse protobuf text into `message`, turning parse errors into located NetdefErrors:
    one line saying what is wrong where, one line of hint (a likely fix, or the source).
    Plain text is encoded by plain_text and decoded by protobuf's C decoder, several times
    faster than text_format, which reads the rest and words every error."""
    return _parse(text, file, message, ())[0]


def field_values(message, names):
    """{name: [the wire bytes of each value]} of repeated message fields of `message`."""
    return {name: [value.SerializeToString() for value in getattr(message, name)] for name in names}


def _parse(text, file, message, split):
    """parse_text, the values of the repeated message fields named in `split` left out of
    `message`: -> (message, {name: [the wire bytes of each value]}, {name: [the line of
    each value]} of the top-level fields, or None where text_format read the text)."""
    read = plain_text.wire_bytes(text, message.DESCRIPTOR, split)
    if read is not None:
        message.MergeFromString(read[0])
        return (message,) + read[1:]
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        line, col = getattr(e, "GetLine", lambda: None)(), getattr(e, "GetColumn", lambda: None)()
        msg = str(e)
        m = re.match(r"^(\d+):(\d+)\s*:\s*(.*)$", msg, re.S)
        if m:
            line, col, msg = int(m.group(1)), int(m.group(2)), m.group(3)
        # Some messages quote the whole line before saying what is wrong; the hint shows it.
        msg = re.sub(r"^'[^\n]*': ", "", msg).strip()
        lines = text.splitlines()
        source = lines[line - 1] if line and 0 < line <= len(lines) else ""
        msg, hint = _explain(msg)
        opened = brackets.unclosed(_brackets(text, lines))
        if opened is not None and (line is None or opened.line <= line):
            # protobuf stops where the open block makes the text wrong (the next `layer`
            # read as one of its fields), not at the block.
            raise NetdefError(file, opened.line, None, "syntax error: %s is not closed" % brackets.describe(opened),
                              "protobuf stopped at line %s: %s" % (line, msg) if line else None,
                              col=opened.col) from None
        if hint is None and source.strip():
            hint = "in: " + _excerpt(source, col)
        raise NetdefError(file, line, None, "syntax error: " + msg, hint, col=col) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # protobuf raises these (not ParseError) for bad UTF-8 and absurd nesting.
        raise NetdefError(file, None, None, "cannot parse: %s" % (str(e)[:200] or type(e).__name__)) from None
    values = field_values(message, split)
    for name in split:
        message.ClearField(name)
    return message, values, None


def _brackets(text, lines):
    """The brackets of protobuf text ({ } < > [ ]), outside strings and comments."""
    name = None
    for m, line, line_start in tokens(text):
        tok = m.group()
        if tok in "{}<>[]":
            yield brackets.bracket(tok, line, m.start() - line_start + 1, lines,
                                   name if tok in "{<[" else None)
            name = None
        elif tok[0] not in "#\"'":
            name = tok


def _excerpt(source, col, width=72):
    """The source line around column `col` (1-based), at most `width` characters."""
    source = source.rstrip()
    start = max(0, min((col or 1) - 1 - width // 2, len(source) - width))
    cut = source[start:start + width].strip()
    return ("..." if start > 0 else "") + cut + ("..." if start + width < len(source) else "")


_POOL = caffe_pb2.DESCRIPTOR.pool


def _block_name(full_name):
    """"caffe.ConvolutionParameter" -> "convolution_param" (the block users write)."""
    if full_name == "caffe.LayerParameter":
        return "layer"
    if full_name == "caffe.NetParameter":
        return "the net"
    for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if f.message_type is not None and f.message_type.full_name == full_name:
            return f.name
    return full_name.split(".")[-1]


def _explain(msg):
    """protobuf's message -> (our message, a hint or None)."""
    m = re.match(r'Message type "([\w.]+)" has no field named "(\w+)"', msg)
    if m:
        try:
            fields = [f.name for f in _POOL.FindMessageTypeByName(m.group(1)).fields]
        except KeyError:
            fields = []
        name, block = m.group(2), _block_name(m.group(1))
        text = "unknown field '%s' in %s" % (name, block)
        homes = [f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields if f.message_type is not None
                 and f.name.endswith("_param") and name in f.message_type.fields_by_name]
        if homes and block == "layer":
            return text, "'%s' goes inside %s" % (name, " or ".join("%s { }" % h for h in homes[:3]))
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
        if close:
            return text, "did you mean '%s'?" % close[0]
        return text, "netdef knows BVLC Caffe's fields plus SSD's and Fast R-CNN's"
    m = re.match(r'Enum type "([\w.]+)" has no value named (\S+?)\.?$', msg)
    if m:
        try:
            values = [v.name for v in _POOL.FindEnumTypeByName(m.group(1)).values]
        except KeyError:
            return msg, None
        return "unknown value %s for %s" % (m.group(2), m.group(1).split(".")[-1]), "one of " + ", ".join(values)
    m = re.match(r"Couldn't parse integer: (\S+)", msg)
    if m:
        return "'%s' is not an integer" % m.group(1), "this field takes a whole number"
    m = re.match(r"Value out of range: (\S+)", msg)
    if m:
        return "value %s is out of range for this field" % m.group(1), \
            "the field is a 32-bit integer; sizes and counts are unsigned (0 to 4294967295)"
    return msg, None


def read_text_file(path):
    path = Path(path)
    size = regular_file(path, "net file").st_size
    try:
        if size > MAX_PROTOTXT_BYTES:
            raise NetdefError(str(path), None, None, "file is %d MB; netdef refuses prototxt files over %d MB"
                              % (size >> 20, MAX_PROTOTXT_BYTES >> 20))
        data = path.read_bytes()
    except OSError as e:
        raise NetdefError(str(path), None, None, "cannot read: %s" % (e.strerror or e)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NetdefError(str(path), None, None, "not a text prototxt (byte %d is not UTF-8); "
                          "is this a binary .caffemodel?" % e.start) from None


LAYER_FIELDS = ("layer", "layers")


def parse_net_text(text, file="<string>"):
    """Text -> (the NetParameter without its layers, {"layer": [each V2 layer's wire bytes],
    "layers": [each V1 layer's]}, {"layer": [lines], "layers": [lines], "input": [line]}).
    The layers stay bytes (Layer keeps them so): a NetParameter holding a million layers
    would take more memory than everything else about the net."""
    try:
        net, layers, lines = _parse(text, file, caffe_pb2.NetParameter(), LAYER_FIELDS)
    except NetdefError:
        if _is_solver(text):
            raise NetdefError(file, None, None, "this is a solver file (SolverParameter), not a net",
                              "train with it: netdef train %s" % file) from None
        raise
    if lines is None:
        return net, layers, _layer_lines(text)
    legacy = sorted(lines[name][0] for name in _LEGACY_INPUTS if name in lines)
    return net, layers, {"layer": lines.get("layer", []), "layers": lines.get("layers", []), "input": legacy[:1]}


def _is_solver(text):
    """Whether the text reads as Caffe's SolverParameter (base_lr, net, max_iter...): users
    hand `compile` the solver.prototxt that sits beside the net."""
    try:
        solver = text_format.Parse(text, caffe_pb2.SolverParameter())
    except (text_format.ParseError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return solver.ListFields() != []


def load_net(path, text=None):
    """Read a prototxt file into a Net of every layer it declares, upgraded as Caffe upgrades
    on load (legacy inputs, V1 layers); the pipeline filters, wires and shapes it."""
    file = str(path)
    if text is None:
        text = read_text_file(path)
    proto, layers, lines = parse_net_text(text, file)
    return Net(proto.name or Path(file).stem, upgrade_layers(proto, layers, file, lines), file=file)


def net_from_proto(proto, file=None, lines=None):
    """A parsed NetParameter (a solver's inline net_param) -> a Net of every layer,
    upgraded; `lines` locate its layers in the file that holds it."""
    layers = upgrade_layers(proto, field_values(proto, LAYER_FIELDS), file, lines)
    return Net(proto.name or Path(file or "net").stem, layers, file=file)

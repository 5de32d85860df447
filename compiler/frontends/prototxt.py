"""Caffe prototxt (text protobuf) -> NetParameter -> an unwired IR Net.

Parsing uses protobuf's text format with netdef's own schema, so unknown fields and
wrong value types are refused with file:line:col. Layer line numbers, which protobuf does
not keep, come from a light scan of the text for top-level `layer {` / `layers {` blocks.
Legacy inputs (`input` + `input_dim` / `input_shape`) become Input layers and V1 layers
are upgraded (passes/upgrade.py), as Caffe does on load.
"""
import re
from pathlib import Path

from google.protobuf import text_format

from compiler.errors import NetdefError
from compiler.ir import Layer, Net
from compiler.passes import upgrade
from compiler.proto import caffe_pb2

# Refuse files larger than this before parsing: a prototxt of a 1000-layer net is ~1 MB.
MAX_PROTOTXT_BYTES = 64 << 20

_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}]|\n|[A-Za-z_][\w]*')


def _layer_lines(text):
    """Line numbers of the top-level `layer` and `layers` blocks, in file order."""
    lines = {"layer": [], "layers": []}
    depth = 0
    line = 1
    pending = None
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "\n":
            line += 1
        elif tok == "{":
            if depth == 0 and pending:
                lines[pending[0]].append(pending[1])
            pending = None
            depth += 1
        elif tok == "}":
            depth -= 1
            pending = None
        elif depth == 0 and tok in ("layer", "layers"):
            pending = (tok, line)
        elif tok[0] not in "#\"'":
            pending = None
    return lines


def parse_text(text, file, message):
    """Parse protobuf text into `message`, turning parse errors into located NetdefErrors."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        line, col = getattr(e, "GetLine", lambda: None)(), getattr(e, "GetColumn", lambda: None)()
        msg = str(e)
        m = re.match(r"^(\d+):(\d+)\s*:\s*(.*)$", msg, re.S)
        if m:
            line, col, msg = int(m.group(1)), int(m.group(2)), m.group(3)
        # Some messages quote the whole line before saying what is wrong; we show it below.
        msg = re.sub(r"^'[^\n]*': ", "", msg)
        source = text.splitlines()[line - 1] if line and 0 < line <= len(text.splitlines()) else ""
        hint = None
        if "has no field named" in msg or "no field named" in msg:
            hint = "check the spelling; netdef knows BVLC Caffe's fields plus SSD and Fast R-CNN's"
        raise NetdefError(file, line, None, "syntax error: %s%s" % (
            msg.strip(), ("\n  | " + source.strip()) if source.strip() else ""), hint, col=col) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise NetdefError(file, None, None, "cannot parse: %s" % e) from None
    return message


def read_text_file(path):
    path = Path(path)
    try:
        size = path.stat().st_size
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


def parse_net_text(text, file="<string>"):
    """Text -> (NetParameter, {"layer": [lines], "layers": [lines]})."""
    net = parse_text(text, file, caffe_pb2.NetParameter())
    return net, _layer_lines(text)


def load_net(path, phase="TEST", stages=(), level=0, text=None):
    """Read a prototxt file into an unwired Net (legacy inputs, V1 upgrade, phase filter)."""
    file = str(path)
    if text is None:
        text = read_text_file(path)
    proto, lines = parse_net_text(text, file)
    return net_from_proto(proto, file, lines, phase, stages, level)


def net_from_proto(proto, file=None, lines=None, phase="TEST", stages=(), level=0):
    lines = lines or {"layer": [], "layers": []}
    if proto.layer and proto.layers:
        raise NetdefError(file, (lines["layers"] or [None])[0], None,
                          "the file mixes V2 `layer {}` and V1 `layers {}` blocks; Caffe refuses it "
                          "(\"Refusing to upgrade inconsistent NetParameter input\")",
                          "convert the V1 `layers` blocks to `layer` blocks (netdef convert can "
                          "upgrade a pure V1 file for you)")
    if proto.layers:
        params = [upgrade.v1_to_v2(v1, file, ln) for v1, ln in
                  zip(proto.layers, _pad(lines["layers"], len(proto.layers)))]
        layer_lines = _pad(lines["layers"], len(proto.layers))
    else:
        params = list(proto.layer)
        layer_lines = _pad(lines["layer"], len(proto.layer))
    layers = upgrade.legacy_inputs(proto, file)
    for p, ln in zip(params, layer_lines):
        layers.append(Layer(name=p.name, type=p.type, param=p, line=ln, file=file))
    net = Net(proto.name or Path(file or "net").stem, layers, file=file, phase=phase)
    net.proto_state = (phase, tuple(stages), level)
    from compiler.passes.phase import filter_phase
    filter_phase(net, phase, stages, level)
    return net


def _pad(seq, n):
    seq = list(seq)
    return seq + [None] * (n - len(seq))

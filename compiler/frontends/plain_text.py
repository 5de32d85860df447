"""Protobuf text -> wire bytes, fast, for text written the plain way; None for anything else.

protobuf's own text parser (google.protobuf.text_format) is written in Python and sets
each field through the message API: about 50 us per layer, most of the time `netdef check`
spends on a big prototxt, and its line lists and per-field objects more than double the
memory while it runs. Nearly every prototxt is plain: `name: value` and `name { ... }`
with decimal numbers, simple strings, enum names, true/false and comments. This module
turns such text into the wire encoding in one regular-expression scan and a walk over
the schema's descriptors; protobuf's C decoder (Message.MergeFromString) then builds the
message in one arena, which is the same message text_format makes.

Whatever is not plain, it declines (returns None) rather than judge: the caller then
parses with text_format, which either reads it (the list syntax, `<...>`, separators,
hex or octal numbers, strings with escapes or written in pieces, nan and inf, 't'/'1' booleans, numbered
enums) or raises its error, with the same line, column and message as before. So are all
mistakes declined: an unknown field or enum value, a missing ':', a value of the wrong
kind or out of range, a singular field given twice, unbalanced braces.
"""
import re
import struct

from google.protobuf import descriptor

FD = descriptor.FieldDescriptor

# text_format's tokens (its Tokenizer._TOKEN), so that a plain token here is one there:
# identifiers, numbers (with letters, dots and signs, judged below), quoted strings, and
# any other single character; and line ends, which count lines. Comments and other
# whitespace are skipped by findall's gaps.
_TOKEN = re.compile(r'#[^\n]*|[a-zA-Z_][0-9a-zA-Z_+-]*|(?:[0-9+-]|\.[0-9])[0-9a-zA-Z_.+-]*'
                    r'|"[^"\n\\]*(?:\\.[^"\n\\]*)*"|\'[^\'\n\\]*(?:\\.[^\'\n\\]*)*\'|\n|\S')
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
_BOOLS = {"true": 1, "True": 1, "false": 0, "False": 0}
_INT_RANGES = {FD.TYPE_INT32: (-1 << 31, 1 << 31), FD.TYPE_INT64: (-1 << 63, 1 << 63),
               FD.TYPE_UINT32: (0, 1 << 32), FD.TYPE_UINT64: (0, 1 << 64)}
_STRINGS = (FD.TYPE_STRING, FD.TYPE_BYTES)


class _NotPlain(Exception):
    """The text uses something this reader leaves to text_format."""


def wire_bytes(text, message_descriptor, split=()):
    """The wire encoding of `text` read as a `message_descriptor` message, as (the bytes of
    its fields but those named in `split`, {name: [the bytes of each value]} for those,
    {name: [the line of each value]} for every field of the top level), or None when the
    text is not plain (then text_format decides: it reads it or says what is wrong).
    `split` names repeated message fields of the top level (a net's layers): each value
    then stays bytes of its own, never part of one message holding them all."""
    pieces = {name: [] for name in split}
    lines = {}
    try:
        rest = _message(_tokens(text, lines), _fields(message_descriptor), nested=False, pieces=pieces,
                        lines=lines)
    except (_NotPlain, RecursionError):
        return None
    del lines[None]
    return rest, pieces, lines


def _tokens(text, lines, chunk=1 << 16):
    """The tokens of the text, comments and line ends left out, scanned a chunk of lines
    at a time (no token spans lines): a 60 MB prototxt has some 20 million, which as one
    list would take more memory than the net. `lines[None]` is the line of the token last
    given (1-based)."""
    start = 0
    lines[None] = 1
    while start < len(text):
        end = text.find("\n", start + chunk)
        end = len(text) if end < 0 else end + 1
        for token in _TOKEN.findall(text, start, end):
            if token == "\n":
                # Counted when the scan passes it: the reader has taken every token before.
                lines[None] += 1
            elif token[0] != "#":
                yield token
        start = end


_TABLES = {}


def _fields(message_descriptor):
    """{field name: (tag bytes, field descriptor, its message's table or None)}, made once
    per message type."""
    table = _TABLES.get(message_descriptor)
    if table is None:
        table = _TABLES[message_descriptor] = {}
        for f in message_descriptor.fields:
            if f.containing_oneof is not None:
                continue        # text_format refuses two members of a oneof: left to it
            wire_type = {FD.TYPE_MESSAGE: 2, FD.TYPE_FLOAT: 5, FD.TYPE_DOUBLE: 1}.get(
                f.type, 2 if f.type in _STRINGS else 0)
            table[f.name] = (_varint(f.number << 3 | wire_type), f, None)
        for name, (tag, f, _) in list(table.items()):
            if f.type == FD.TYPE_MESSAGE:
                table[name] = (tag, f, _fields(f.message_type))
    return table


def _message(tokens, table, nested, pieces=None, lines=None):
    """The wire bytes of the fields up to the '}' that closes the message (taken) when it
    is `nested`, else up to the end of the text (then `lines` is _tokens' and gets the line
    of each field); the values of fields named in `pieces` go to its lists instead."""
    out = bytearray()
    singular = set()
    for name in tokens:
        if not nested:
            lines.setdefault(name, []).append(lines[None])
        if name == "}":
            if nested:
                return out
            raise _NotPlain
        entry = table.get(name)
        if entry is None:
            raise _NotPlain
        tag, field, sub_table = entry
        if not field.is_repeated:
            if name in singular:
                raise _NotPlain
            singular.add(name)
        token = next(tokens, None)
        if sub_table is not None:
            if token == ":":
                token = next(tokens, None)
            if token != "{":
                raise _NotPlain
            body = _message(tokens, sub_table, nested=True)
            if pieces and name in pieces:
                pieces[name].append(bytes(body))
                continue
            out += tag
            out += _varint(len(body))
            out += body
            continue
        if token != ":":
            raise _NotPlain
        out += tag
        out += _scalar(next(tokens, None), field)
    if nested:
        raise _NotPlain
    return out


def _scalar(token, field):
    """The wire bytes of the value `token` of `field`, without its tag."""
    if token is None:
        raise _NotPlain
    kind = field.type
    if kind in _STRINGS:
        # A plain string: text_format unescapes escapes and joins adjacent strings.
        if len(token) < 2 or token[0] not in "\"'" or token[-1] != token[0] or "\\" in token:
            raise _NotPlain
        data = token[1:-1].encode("utf-8")
        return _varint(len(data)) + data
    if kind == FD.TYPE_ENUM:
        value = field.enum_type.values_by_name.get(token)
        if value is None:
            raise _NotPlain
        return _varint(value.number)
    if kind == FD.TYPE_BOOL:
        if token not in _BOOLS:
            raise _NotPlain
        return b"\x01" if _BOOLS[token] else b"\x00"
    if kind in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        if not _FLOAT.match(token):
            raise _NotPlain
        try:
            return struct.pack("<f" if kind == FD.TYPE_FLOAT else "<d", float(token))
        except OverflowError:       # beyond a float32: text_format says what it makes of it
            raise _NotPlain from None
    bounds = _INT_RANGES.get(kind)
    if bounds is None or not _INT.match(token):
        raise _NotPlain
    value = int(token)
    if not bounds[0] <= value < bounds[1]:
        raise _NotPlain
    return _varint(value)


def _varint(value):
    """Base-128 varint; a negative value as its 64-bit two's complement (protobuf's int32
    and int64 encoding)."""
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

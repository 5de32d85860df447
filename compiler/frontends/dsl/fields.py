"""How a value of the netdef language becomes a protobuf field: `k=3` on a repeated field
is a list of one, `{type="xavier"}` fills a message, `[1, 3, 224, 224]` a BlobShape, MAX
an enum. Wrong types, unknown fields and out-of-range integers are Complaints located at
the keyword.
"""
from compiler.frontends.dsl.values import UNSET, Complaint, Enum, Message, describe, is_int, suggest
from compiler.proto import caffe_pb2, is_repeated

LAYER_FIELDS = {f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields}

_INT_RANGE = {
    "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "uint32": (0, (1 << 32) - 1), "uint64": (0, (1 << 64) - 1),
}
_INT_KINDS = {3: "int64", 4: "uint64", 5: "int32", 13: "uint32", 17: "int32", 18: "int64",
              15: "int32", 16: "int64", 6: "uint64", 7: "uint32"}


def set_field(msg, name, value, node=None):
    """msg.<name> = value, with the language's conversions: a list for a repeated field
    (one value is a list of one), a message literal for a message, an int list for a
    BlobShape, an Enum for an enum; `none` leaves the field unset."""
    f = msg.DESCRIPTOR.fields_by_name.get(name)
    if f is None:
        raise Complaint("%s has no field '%s'" % (msg.DESCRIPTOR.name, name),
                        suggest(name, [g.name for g in msg.DESCRIPTOR.fields]), node)
    if value is UNSET:
        return
    if is_repeated(f):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if f.message_type is not None and f.message_type.name == "BlobShape" and items and \
                all(is_int(v) for v in items):
            items = [items]     # shape=[1, 3, 224, 224] is one shape, not four
        container = getattr(msg, name)
        for v in items:
            if f.message_type is not None:
                _fill(container.add(), v, name, node)
            else:
                container.append(_scalar(f, v, node))
    elif f.message_type is not None:
        sub = getattr(msg, name)
        sub.SetInParent()
        _fill(sub, value, name, node)
    else:
        setattr(msg, name, _scalar(f, value, node))


def _fill(sub, value, name, node):
    if sub.DESCRIPTOR.name == "BlobShape" and isinstance(value, (list, tuple)):
        for d in value:
            sub.dim.append(_scalar(sub.DESCRIPTOR.fields_by_name["dim"], d, node))
        return
    if not isinstance(value, Message):
        raise Complaint("%s takes a message like {%s}, got %s" % (
            name, ", ".join("%s=..." % g.name for g in sub.DESCRIPTOR.fields[:2]), describe(value)),
            None, node)
    for key, v in value.items():
        set_field(sub, key, v, value.nodes.get(key, node))


def _scalar(f, v, node):
    if f.type == f.TYPE_ENUM:
        if isinstance(v, Enum):
            ev = f.enum_type.values_by_name.get(str(v))
            if ev is not None:
                return ev.number
        names = [e.name for e in f.enum_type.values]
        raise Complaint("%s is one of %s, got %s" % (f.name, ", ".join(names), describe(v)),
                        suggest(str(v), names) if isinstance(v, str) else None, node)
    if f.type == f.TYPE_BOOL:
        if isinstance(v, bool):
            return v
        raise Complaint("%s is true or false, got %s" % (f.name, describe(v)), None, node)
    if f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise Complaint("%s is a number, got %s" % (f.name, describe(v)), None, node)
    if f.type in (f.TYPE_STRING, f.TYPE_BYTES):
        if isinstance(v, str) and not isinstance(v, Enum):
            return v if f.type == f.TYPE_STRING else v.encode("utf-8")
        hint = 'write it in quotes: %s="%s"' % (f.name, v) if isinstance(v, Enum) else None
        raise Complaint("%s is a string, got %s" % (f.name, describe(v)), hint, node)
    kind = _INT_KINDS.get(f.type)
    if kind is not None:
        if is_int(v):
            lo, hi = _INT_RANGE[kind]
            if not lo <= v <= hi:
                raise Complaint("%s is a %s; %d is out of range" % (f.name, kind, v), None, node)
            return v
        hint = "use // for integer division" if isinstance(v, float) else None
        raise Complaint("%s is an integer, got %s" % (f.name, describe(v)), hint, node)
    raise Complaint("%s has a type netdef cannot set" % f.name, None, node)

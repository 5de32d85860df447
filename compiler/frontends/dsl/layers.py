"""One layer call of the netdef language -> one caffe_pb2.LayerParameter, exactly as a
prototxt would declare it.

Arguments: the input blobs come first (or flow in through `->`), then the op's positional
parameters (conv(64, 3): num_output, kernel_size), then keywords. A keyword is a field of
the type's parameter message, short or long (k=3 or kernel_size=3), or a LayerParameter
field (loss_weight=1, include={...}); lr_mult=[1, 2] and decay_mult=[1, 0] write the
`param { }` specs.

Naming rules (what makes `conv1 = data -> conv(64, k=7) -> relu` one line):
- a layer that makes a new blob is named by `as NAME`, else by the variable it is
  assigned to; its top has the same name. A layer between two others in a chain that
  has no `as` is named `<variable>_<op>` (y = x -> conv -> pool: y_conv, then y).
- an in-place type (its LayerDef says `in_place`: ReLU, BatchNorm, Scale, ...)
  rewrites its first bottom, as Caffe nets do, and is named `<blob>_<op>` unless named
  with `as`.
- `top=` sets the top(s) explicitly (and makes an in-place type write a new blob).
"""
from dataclasses import dataclass

from compiler.frontends.dsl.fields import LAYER_FIELDS, set_field
from compiler.frontends.dsl.values import UNSET, BlobRef, Complaint, Enum, describe, suggest
from compiler.layers import registry
from compiler.proto import caffe_pb2

# Keywords that look like LayerParameter fields but are said another way in the language.
_NOT_KEYWORDS = {"name": "name a layer with `as NAME`",
                 "type": "call the type: conv(...), ReLU(...), PriorBox(...)",
                 "bottom": "pass the input blobs first: op(x, y, ...) or x -> op(...)"}


@dataclass
class Naming:
    """How the layer an expression makes is named: `as` name, the assignment's variables
    (for the layer whose value they get), or the chain's variable for layers before it."""
    as_name: str = None
    targets: list = None
    chain_target: str = None
    used: bool = False


def layer_param(op, args, nodes, kw, naming):
    """op(args..., key=value...) -> LayerParameter with name, bottoms, tops and fields.
    `nodes` locate the positional arguments, kw is {key: (value, key node)}. Raises a
    Complaint; one without a node belongs at the call."""
    bottoms, params = _split_args(op, args, nodes)
    param = caffe_pb2.LayerParameter(type=op.type)
    top = _set_params(op, param, params, kw)
    name, tops = _name_and_tops(op, bottoms, top, kw, naming)
    param.name = name
    param.bottom.extend(b.name for b in bottoms)
    param.top.extend(tops)
    return param


def _split_args(op, args, nodes):
    bottoms, params = [], []
    for v, v_node in zip(args, nodes):
        blobs = _blobs(v)
        if blobs is not None and not params:
            bottoms.extend(blobs)
        elif blobs is not None:
            raise Complaint("blob '%s' comes after %s's parameters" % (blobs[0].name, op.name),
                            "give the input blobs first: %s(x, ...) or x -> %s(...)" % (op.name, op.name), v_node)
        else:
            params.append((v, v_node))
    return bottoms, params


def _set_params(op, param, params, kw):
    """Fill the fields; -> the value of `top=`, or None."""
    main_field = op.param_field
    main = getattr(param, main_field) if main_field else None
    if len(params) > len(op.positional):
        expected = ", ".join(op.positional) or "none"
        raise Complaint("%s takes %d positional parameter%s (%s), got %d" % (
            op.name, len(op.positional), "" if len(op.positional) == 1 else "s", expected, len(params)),
            "give the others by name, e.g. %s(%s=...)" % (
                op.name, main.DESCRIPTOR.fields[0].name if main is not None else "..."))
    given = {}
    for fname, (v, v_node) in zip(op.positional, params):
        set_field(main, fname, v, v_node)
        given[fname] = v_node
    top = None
    mults = {}
    for key, (v, key_node) in kw.items():
        fname = op.short.get(key, key)
        if v is UNSET and key in ("top", "lr_mult", "decay_mult"):
            continue
        if key == "top":
            top = v
        elif key in _NOT_KEYWORDS:
            raise Complaint("%s is not a keyword" % key, _NOT_KEYWORDS[key], key_node)
        elif key in ("lr_mult", "decay_mult"):
            mults[key] = (v, key_node)
        elif main is not None and fname in main.DESCRIPTOR.fields_by_name:
            if fname in given:
                raise Complaint("%s is given twice (by position and by name)" % fname, None, key_node)
            given[fname] = key_node
            set_field(main, fname, v, key_node)
        elif key in LAYER_FIELDS:
            set_field(param, key, v, key_node)
        elif registry.get(op.type) is None and main is None:
            raise Complaint("unknown layer type '%s': netdef cannot tell what its parameter '%s' sets"
                            % (op.type, key), "register the type first (netdef.register_layer), "
                            "or give its parameters as xxx_param={...}", key_node)
        else:
            known = list(op.short) + list(LAYER_FIELDS) + \
                ([f.name for f in main.DESCRIPTOR.fields] if main is not None else [])
            where = "%s (%s)" % (op.name, op.type) if op.name != op.type else op.type
            raise Complaint("%s has no parameter '%s'" % (where, key), suggest(key, known), key_node)
    if mults:
        _param_mults(param, mults)
    return top


def _param_mults(param, mults):
    """lr_mult=[1, 2], decay_mult=[1, 0] -> param { lr_mult: 1 decay_mult: 1 } param {...}."""
    if param.param:
        node = next(iter(mults.values()))[1]
        raise Complaint("give lr_mult/decay_mult or param=[...], not both", None, node)
    for key, (v, key_node) in mults.items():
        values = list(v) if isinstance(v, (list, tuple)) else [v]
        while len(param.param) < len(values):
            param.param.add()
        for spec, x in zip(param.param, values):
            set_field(spec, key, x, key_node)


def _name_and_tops(op, bottoms, top, kw, naming):
    """The naming rules of the module docstring."""
    if op.in_place and top is None:
        if not bottoms:
            raise Complaint("%s needs an input blob: x -> %s" % (op.name, op.name))
        return naming.as_name or "%s_%s" % (bottoms[0].name, op.name), [bottoms[0].name]
    if naming.as_name:
        name = naming.as_name
    elif naming.targets:
        name = naming.targets[0]
    elif naming.chain_target:
        name = "%s_%s" % (naming.chain_target, op.name)
    else:
        raise Complaint("this %s layer needs a name" % op.name, "assign it (y = ...) or name it (... as NAME)")
    if top is not None:
        tops = _top_names(top)
        if tops is None:
            raise Complaint("top is a blob name or a list of them, got %s" % describe(top), None, kw["top"][1])
    elif naming.targets:
        tops = [naming.as_name] if naming.as_name and len(naming.targets) == 1 else list(naming.targets)
    elif op.tops == 0:
        tops = []
    else:
        tops = [name]
    return name, tops


def _blobs(v):
    """A blob, or a non-empty list/tuple of blobs, as bottoms; None if v is a parameter."""
    if isinstance(v, BlobRef):
        return [v]
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, BlobRef) for x in v):
        return list(v)
    return None


def _top_names(v):
    items = v if isinstance(v, (list, tuple)) else [v]
    names = []
    for x in items:
        if isinstance(x, BlobRef):
            names.append(x.name)
        elif isinstance(x, str) and not isinstance(x, Enum) and x:
            names.append(x)
        else:
            return None
    return names

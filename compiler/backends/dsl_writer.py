"""Caffe layers -> netdef language text (`netdef convert net.prototxt -o net.net`).

The text builds the same LayerParameters back (names, types, every field the file sets,
connections, order): only fields the prototxt sets are written, so Caffe's defaults stay
implicit, and a field set to its default value stays set. Readability comes from the
language's defaults: a layer followed by the in-place layers on its top (conv -> bn ->
scale -> relu) is one chain, and so is a run of layers each reading only the previous
one's blob (conv -> relu -> pool); `as NAME` appears only where the default name differs;
a run of layers included in one phase is a `phase TRAIN { }` block.
"""
import math
import re

from compiler.errors import NetdefError
from compiler.layers.arithmetic import f32
from compiler.proto import caffe_pb2, is_repeated
from grammar import BUILTIN_FUNCTIONS, KEYWORDS, SUM_OP
from grammar.spelling import Spelling

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LINE = 100      # chains longer than this are broken before each `->`
_NET_FIELDS_DONE = {"name", "layer", "layers", "input", "input_dim", "input_shape"}


def to_dsl(name, layers, options=None, source=None):
    """name, [LayerParameter] (after Caffe's load-time upgrades) -> .net text."""
    return _Writer(layers).net_text(name, options, source)


class _Writer:
    def __init__(self, layers):
        self.layers = list(layers)
        self.users = {}         # blob -> indices of the layers that read or write it
        for i, p in enumerate(self.layers):
            for b in list(p.bottom) + list(p.top):
                self.users.setdefault(b, []).append(i)
        # A variable hides the layer or function of its name, so it may take one only
        # when no later layer is called by it: `accuracy = accuracy(ip2, label)` is fine.
        self.last_call = {}
        for i, p in enumerate(self.layers):
            self.last_call[p.type] = i
            self.last_call[Spelling(p.type).name] = i
        self.vars = {}          # blob -> variable name
        self.taken = set()

    # -- names ---------------------------------------------------------------------------
    def var(self, blob, define_at=None):
        """The variable holding a blob; define_at (a layer index) defines it there."""
        if blob not in self.vars:
            if define_at is None:
                raise NetdefError(None, None, None, "blob '%s' is read before any layer writes it" % blob,
                                  "netdef convert keeps layer order; a blob must be written before it is read")
            base = blob if _IDENT.match(blob) else re.sub(r"\W", "_", blob)
            if not _IDENT.match(base):
                base = "b_" + base
            if base.isupper():      # an unbound upper-case name is an enum value (MAX)
                base = base.lower()
            name, k = base, 2
            while not self.free(name, define_at):
                name, k = "%s_%d" % (base, k), k + 1
            self.vars[blob] = name
            self.taken.add(name)
        return self.vars[blob]

    def free(self, name, at):
        return name not in self.taken and name not in KEYWORDS and name not in BUILTIN_FUNCTIONS and \
            name != SUM_OP and self.last_call.get(name, -1) <= at

    # -- the net -------------------------------------------------------------------------
    def net_text(self, name, options, source):
        out = []
        if source:
            out.append("# Converted from %s by netdef convert." % source)
        opts = ""
        if options is not None:
            items = [(f, v) for f, v in options.ListFields() if f.name not in _NET_FIELDS_DONE]
            if items:
                opts = " (%s)" % ", ".join("%s=%s" % (f.name, field_text(f, v)) for f, v in items)
        out.append("net %s%s {" % (quote(name), opts))
        i = 0
        while i < len(self.layers):
            phase = _phase_of(self.layers[i])
            end = i
            while end < len(self.layers) and _phase_of(self.layers[end]) == phase:
                end += 1
            indent = "    "
            if phase:
                out.append("    phase %s {" % phase)
                indent = "        "
            while i < end:
                text, i = self.statement(i, end, bool(phase))
                out.extend(indent + line for line in text.split("\n"))
            if phase:
                out.append("    }")
        out.append("}")
        return "\n".join(out) + "\n"

    def statement(self, i, end, in_phase):
        """The statement that writes layers[i] (and the chain of layers folded into it)."""
        first = self.layers[i]
        if first.type == "Input":
            text = self.input_statement(first, i, in_phase)
            if text:
                return text, i + 1
        links = [self.link(first, i)]
        cur = _chain_blob(first)
        j = i + 1
        while j < end and cur is not None and self.folds(i, j, cur, links):
            links.append(self.link(self.layers[j], j))
            cur = _chain_blob(self.layers[j])
            j += 1
        return self.chain_text(links), j

    def folds(self, i, j, cur, links):
        """Whether layers[j] continues the chain of layers[i..j-1], whose value is `cur`."""
        m = self.layers[j]
        if not m.bottom or m.bottom[0] != cur or any(b not in self.vars for b in m.bottom[1:]):
            return False
        if _in_place(m):
            return True
        # conv -> pool folds; after conv -> relu a new layer starts a new statement, so a
        # statement is one layer and the in-place layers on its top.
        if len(m.top) != 1 or m.top[0] in self.vars or links[-1]["in_place"]:
            return False
        # cur stops being reachable by a name: nothing outside the chain may use it.
        return all(i <= k <= j for k in self.users.get(cur, ()))

    # -- layers --------------------------------------------------------------------------
    def link(self, p, index):
        """One layer as a link of a chain."""
        if not p.type:
            raise NetdefError(None, None, p.name, "the layer has no type",
                              'add type: "..." with its Caffe type (Convolution, ReLU, ...)')
        op = Spelling(p.type)
        if not op.name[0].isalpha() or not _IDENT.match(op.name) or \
                (not op.known and not op.name[0].isupper()):
            raise NetdefError(None, None, p.name, "layer type '%s' cannot be written in the netdef "
                              "language (a type is called by its name, which starts with a capital)" % p.type)
        return {"p": p, "op": op, "in_place": _in_place(p), "index": index}

    def chain_text(self, links):
        producing = [k for k, l in enumerate(links) if not l["in_place"]]
        result = producing[-1] if producing else None
        targets = [self.var(t, links[result]["index"]) for t in links[result]["p"].top] \
            if result is not None else []
        chain_target = targets[0] if targets else None
        parts = []
        first = links[0]
        if first["in_place"] or len(first["p"].bottom) == 1:
            parts.append(self.var(first["p"].bottom[0]))
            start = 0
        else:
            parts.append(self.call_text(first, 0 == result, targets, chain_target, with_bottoms=True))
            start = 1
        for k in range(start, len(links)):
            parts.append(self.call_text(links[k], k == result, targets, chain_target, with_bottoms=False))
        lhs = ", ".join(targets) + " = " if targets else ""
        text = lhs + " -> ".join(str(x) for x in parts)
        if len(text) <= LINE:
            return text
        if len(parts) > 2:      # one link per line
            return "\n".join([lhs + str(parts[0]) + " -> " + str(parts[1])] + ["    -> " + str(x) for x in parts[2:]])
        last = parts[-1]        # one call: one argument per line
        head = lhs + (str(parts[0]) + " -> " if len(parts) == 2 else "")
        return head + (last.broken() if isinstance(last, _Call) else str(last))

    def call_text(self, link, is_result, targets, chain_target, with_bottoms):
        """A layer as a call, with `as` and `top=` only where the reader's defaults (see
        compiler/frontends/dsl/layers.py) would give another name or other tops."""
        p, op = link["p"], link["op"]
        bottoms = list(p.bottom) if with_bottoms else list(p.bottom[1:])
        plain_sum = p.type == "Eltwise" and with_bottoms and len(p.bottom) >= 2 and \
            _only_fields(p, {"name", "type", "bottom", "top"} | ({"include"} if _phase_of(p) else set()))
        if plain_sum:
            op = Spelling(p.type, SUM_OP)
        if link["in_place"]:
            default_name = "%s_%s" % (p.bottom[0], op.name)
        elif is_result and targets:
            default_name = targets[0]
        elif not is_result and chain_target is not None:
            default_name = "%s_%s" % (chain_target, op.name)
        else:
            default_name = None
        as_name = None if p.name == default_name else p.name
        if link["in_place"]:
            default_tops = [p.bottom[0]]
        elif is_result and targets:
            default_tops = [as_name] if as_name is not None and len(targets) == 1 else list(targets)
        elif op.tops == 0:
            default_tops = []
        else:
            default_tops = [as_name or default_name]
        # An in-place type writes in place unless given top=, so it always needs one here.
        explicit_top = list(p.top) != default_tops or (op.in_place and not link["in_place"])
        args = [self.var(b) for b in bottoms]
        tail = " as " + name_text(as_name) if as_name is not None else ""
        if plain_sum and not explicit_top:
            return " + ".join(args) + tail
        args += self.param_args(p, op)
        if explicit_top:
            args.append("top=%s" % (quote(p.top[0]) if len(p.top) == 1 else
                                     "[%s]" % ", ".join(quote(t) for t in p.top)))
        return _Call(op.name, args, tail)

    def param_args(self, p, op):
        args = []
        main_name = op.param_field
        short = {f: s for s, f in op.short.items()}
        if main_name and p.HasField(main_name):
            main = getattr(p, main_name)
            fields = main.ListFields()
            if not fields:     # present but empty: keep it present
                args.append("%s={}" % main_name)
            # The first positional field goes by position when it is one plain value:
            # conv(64, ...), pool(MAX, ...), dropout(0.5).
            f0 = main.DESCRIPTOR.fields_by_name[op.positional[0]] if op.positional else None
            if f0 is not None and not is_repeated(f0) and f0.message_type is None and main.HasField(f0.name):
                args.append(field_text(f0, getattr(main, f0.name)))
                fields = [(f, v) for f, v in fields if f.name != f0.name]
            # conv(64, k=3, s=2, p=1): the positional fields first, in their order.
            order = {name: k for k, name in enumerate(op.positional)}
            fields.sort(key=lambda fv: order.get(fv[0].name, len(order)))
            for f, v in fields:
                args.append("%s=%s" % (short.get(f.name, f.name), field_text(f, v)))
        for f, v in p.ListFields():
            if f.name in ("name", "type", "bottom", "top", main_name):
                continue
            if f.name == "include" and _phase_of(p):
                continue
            if f.name == "blobs":
                raise NetdefError(None, None, p.name, "the layer carries weights (blobs) in the net file",
                                  "keep weights in a .caffemodel; netdef convert writes definitions only")
            if f.name == "param" and _mults_only(v):
                for key in ("lr_mult", "decay_mult"):
                    if v[0].HasField(key):
                        args.append("%s=[%s]" % (key, ", ".join(
                            number_text(getattr(s, key), True) for s in v)))
                continue
            args.append("%s=%s" % (f.name, field_text(f, v)))
        return args

    def input_statement(self, p, index, in_phase):
        """`input data: 3x224x224, batch=10` when the Input layer is that simple."""
        allowed = {"name", "type", "top", "input_param"} | ({"include"} if in_phase else set())
        shapes = list(p.input_param.shape)
        if not _only_fields(p, allowed) or not _only_fields(p.input_param, {"shape"}) or \
                len(shapes) != len(p.top) or not shapes:
            return None
        if any(not s.dim or any(d <= 0 for d in s.dim) or len(s.ListFields()) != 1 for s in shapes):
            return None
        # `input data: ...` names the variable and the blob alike.
        if len({s.dim[0] for s in shapes}) != 1 or \
                any(not _IDENT.match(t) or t.isupper() or not self.free(t, index) for t in p.top):
            return None
        items = []
        for t, s in zip(p.top, shapes):
            self.var(t, index)
            dims = list(s.dim[1:])
            items.append("%s: %s" % (t, "[]" if not dims else str(dims[0]) if len(dims) == 1 else
                                     "x".join(str(d) for d in dims)))
        if shapes[0].dim[0] != 1:
            items.append("batch=%d" % shapes[0].dim[0])
        text = "input " + ", ".join(items)
        if p.name != "input":
            text += " as " + name_text(p.name)
        return text


class _Call:
    """op(args) as NAME, printed on one line or with one argument per line."""

    def __init__(self, op, args, tail):
        self.op, self.args, self.tail = op, args, tail

    def __str__(self):
        return self.op + ("(%s)" % ", ".join(self.args) if self.args else "") + self.tail

    def broken(self):
        if len(self.args) < 2:
            return str(self)
        return "%s(\n%s)%s" % (self.op, ",\n".join("        " + a for a in self.args), self.tail)


def _in_place(p):
    """Written in place the way the reader writes an in-place type without top=."""
    return Spelling(p.type).in_place and len(p.top) == 1 and len(p.bottom) >= 1 and p.top[0] == p.bottom[0]


def _chain_blob(p):
    """The blob a chain carries on after this layer: its single top."""
    return p.top[0] if len(p.top) == 1 else None


def _phase_of(p):
    """TRAIN or TEST when the layer's only rule is include { phase: X }."""
    if len(p.include) == 1 and not p.exclude:
        rule = p.include[0]
        if [f.name for f, _ in rule.ListFields()] == ["phase"]:
            return caffe_pb2.Phase.Name(rule.phase)
    return None


def _only_fields(msg, names):
    return all(f.name in names for f, _ in msg.ListFields())


def _mults_only(specs):
    keys = [tuple(sorted(f.name for f, _ in s.ListFields())) for s in specs]
    return keys and len(set(keys)) == 1 and keys[0] and set(keys[0]) <= {"lr_mult", "decay_mult"}


def name_text(name):
    return name if _IDENT.match(name) and name not in KEYWORDS else quote(name)


def quote(s):
    text = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"%s"' % text.replace("{", "{{").replace("}", "}}")


def number_text(v, single):
    """A float as the shortest text that reads back to the same float32 (or double)."""
    if isinstance(v, bool) or isinstance(v, int):
        return str(v)
    if math.isnan(v) or math.isinf(v):
        raise NetdefError(None, None, None, "the value %r cannot be written in the netdef language" % v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if single:
        for digits in range(1, 10):
            text = "%.*g" % (digits, v)
            if f32(float(text)) == f32(v):
                break
    else:
        text = repr(v)
    return text if ("." in text or "e" in text) else text + ".0"


def field_text(f, v):
    if is_repeated(f):
        values = list(v)
        if f.message_type is not None and f.message_type.name == "BlobShape":
            if len(values) == 1 and values[0].dim:
                return _shape_text(values[0])
            return "[%s]" % ", ".join(_shape_text(s) for s in values)
        items = [_scalar_text(f, x) for x in values]
        return items[0] if len(items) == 1 else "[%s]" % ", ".join(items)
    return _scalar_text(f, v)


def _shape_text(shape):
    return "[%s]" % ", ".join(str(d) for d in shape.dim)


def _scalar_text(f, v):
    if f.message_type is not None:
        if f.message_type.name == "BlobShape" and [g.name for g, _ in v.ListFields()] in (["dim"], []):
            return _shape_text(v)
        return "{%s}" % ", ".join("%s=%s" % (g.name, field_text(g, x)) for g, x in v.ListFields())
    if f.type == f.TYPE_ENUM:
        return f.enum_type.values_by_number[v].name
    if f.type == f.TYPE_BOOL:
        return "true" if v else "false"
    if f.type == f.TYPE_STRING:
        return quote(v)
    if f.type == f.TYPE_BYTES:
        return quote(v.decode("utf-8", "replace"))
    if f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
        return number_text(v, f.type == f.TYPE_FLOAT)
    return str(v)

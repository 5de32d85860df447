"""The netdef language (docs/dsl.md) -> Caffe layers: an interpreter over the parse tree.

A .net file declares blocks (parametric groups of layers) and nets. Building a net runs
its body: statements bind variables to values (numbers, strings, lists, blobs), and each
layer call appends one caffe_pb2.LayerParameter to the net, exactly as a prototxt would
declare it, so the rest of netdef (wiring, shapes, torch, weights by layer name) sees no
difference. Arithmetic, conditions and templates are evaluated here, node by node: user
text is never handed to Python's eval.

Naming rules (what makes `conv1 = data -> conv(64, k=7) -> relu` one line):
- a layer that makes a new blob is named by `as NAME`, else by the variable it is
  assigned to; its top has the same name. A layer between two others in a chain that
  has no `as` is named `<variable>_<op>` (y = x -> conv -> pool: y_conv, then y).
- an in-place type (ReLU, BatchNorm, Scale, Bias, PReLU, ELU, Dropout) rewrites its
  first bottom, as Caffe nets do, and is named `<blob>_<op>` unless named with `as`.
- `top=` sets the top(s) explicitly (and makes an in-place type write a new blob).
"""
from dataclasses import dataclass, field
from pathlib import Path

from lark import Token, Tree

from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends import dsl_parse
from compiler.frontends.dsl_ops import (ADD, LAYER_FIELDS, OPS, UNSET, BlobRef, Enum, FieldError, Message,
                                        Op, describe, op_for_type, set_field, _suggest)
from compiler.ir import Layer, Net
from compiler.proto import caffe_pb2
from compiler.state import NetState

MAX_SOURCE_BYTES = 16 << 20
# BlobShape dims are int64: a larger number would make protobuf raise, not report.
MAX_DIM = 1 << 63
# Loops and lists longer than this are mistakes (a net of a million layers), not nets;
# it bounds the loop iterations of one whole build too, nested loops included.
MAX_ITERATIONS = 100000


class BlockDef:
    def __init__(self, name, params, body, module, node):
        self.name, self.params, self.body, self.module, self.node = name, params, body, module, node

    def signature(self):
        return "%s(%s)" % (self.name, ", ".join(p if d is None else "%s=..." % p for p, d in self.params))


class Builtin:
    def __init__(self, name, fn, usage):
        self.name, self.fn, self.usage = name, fn, usage


class _Fail(Exception):
    """A builtin's complaint, located by the interpreter at the call."""


def _range(*a):
    if not 1 <= len(a) <= 3 or not all(_is_int(x) for x in a):
        raise _Fail("range takes 1 to 3 integers")
    if len(a) == 3 and a[2] == 0:
        raise _Fail("range step must not be 0")
    r = range(*a)
    try:
        n = len(r)
    except OverflowError:       # more values than a C ssize_t counts
        raise _Fail("range(%s) is too long" % ", ".join(map(str, a))) from None
    if n > MAX_ITERATIONS:
        raise _Fail("range of %d values is too long" % n)
    return list(r)


def _letter(i):
    if not _is_int(i) or not 0 <= i < 26:
        raise _Fail("letter takes an integer from 0 to 25, got %s" % describe(i))
    return chr(ord("a") + i)


def _len(x):
    if not isinstance(x, (list, tuple, str)) or isinstance(x, Enum):
        raise _Fail("len takes a list or a string, got %s" % describe(x))
    return len(x)


def _minmax(fn):
    def run(*a):
        items = a[0] if len(a) == 1 and isinstance(a[0], (list, tuple)) else a
        if not items or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
            raise _Fail("%s takes numbers" % fn.__name__)
        return fn(items)
    return run


def _enumerate(x):
    if not isinstance(x, (list, tuple)):
        raise _Fail("enumerate takes a list, got %s" % describe(x))
    return [(i, v) for i, v in enumerate(x)]


BUILTINS = {b.name: b for b in [
    Builtin("range", _range, "range(stop), range(start, stop[, step])"),
    Builtin("letter", _letter, "letter(i): 0 -> a, 1 -> b, ..."),
    Builtin("len", _len, "len(list)"),
    Builtin("str", lambda x: format_value(x), "str(value)"),
    Builtin("min", _minmax(min), "min(a, b, ...)"),
    Builtin("max", _minmax(max), "max(a, b, ...)"),
    Builtin("enumerate", _enumerate, "enumerate(list): [(0, first), (1, second), ...]"),
]}


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def format_value(v):
    """A value as a template writes it: "res{stage}{letter(i)}"."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, BlobRef):
        return v.name
    if isinstance(v, (str, int, float)):
        return str(v)
    raise _Fail("%s cannot be written into a name" % describe(v))


@dataclass
class Naming:
    """How the layer an expression makes is named: `as` name, the assignment's variables
    (for the layer whose value they get), or the chain's variable for layers before it."""
    as_name: str = None
    targets: list = None
    chain_target: str = None
    used: bool = False


@dataclass
class Made:
    param: object           # caffe_pb2.LayerParameter
    file: str
    line: int
    col: int
    lines: list             # the source file's lines, for error excerpts


@dataclass
class Expect:
    blob: str
    dims: list
    writer: int             # index in NetSpec.layers of the layer that last wrote the blob
    file: str
    line: int
    col: int
    lines: list


@dataclass
class NetSpec:
    """A built net: its LayerParameters in order (all phases), as a prototxt holds them."""
    name: str
    file: str
    layers: list = field(default_factory=list)
    expects: list = field(default_factory=list)
    options: object = None  # caffe_pb2.NetParameter with the net-level fields set

    def to_proto(self):
        proto = caffe_pb2.NetParameter()
        proto.CopyFrom(self.options)
        proto.name = self.name
        for m in self.layers:
            proto.layer.add().CopyFrom(m.param)
        return proto


class Module:
    """One .net file: its blocks, constants and nets."""

    def __init__(self, file, text):
        self.file = file
        self.lines = text.splitlines()
        self.names = {}         # blocks and constants, own and imported
        self.defined_at = {}    # name -> (file, line) where it was defined
        self.nets = {}          # net name -> net_def tree
        self.templates = {}     # id(STRING token) -> parsed template
        self.own = []           # names this file defines (what importing it brings in)


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Interpreter:
    def __init__(self, module):
        self.module = module
        self.net = None         # the NetSpec being built; None while loading a module
        self.phase = None
        self.stack = []         # blocks being called, for the recursion check
        self.writers = {}       # blob name -> index of the layer that last wrote it
        self.iterations = 0     # loop iterations so far, against MAX_ITERATIONS

    # -- errors --------------------------------------------------------------------------
    def error(self, node, message, hint=None, layer=None):
        line, col = dsl_parse.token_pos(node) if node is not None else (None, None)
        return dsl_parse.located(self.module.file, self.module.lines, line, col, message, hint, layer)

    # -- statements ----------------------------------------------------------------------
    def run_body(self, body, scope):
        for stmt in body.children:
            getattr(self, "s_" + stmt.data)(stmt, scope)

    def s_assign(self, node, scope):
        *names, expr = node.children
        names = [str(n) for n in names]
        value = self.eval(expr, scope, Naming(targets=names))
        if len(names) == 1:
            scope[names[0]] = value
            return
        if not isinstance(value, (tuple, list)) or len(value) != len(names):
            raise self.error(node, "%d names on the left, but the right side is %s" % (len(names), describe(value)))
        for n, v in zip(names, value):
            scope[n] = v

    def s_expr_stmt(self, node, scope):
        self.eval(node.children[0], scope, Naming())

    def s_for_stmt(self, node, scope):
        *names, iterable, body = node.children
        items = self.eval(iterable, scope)
        if not isinstance(items, (list, tuple)) or isinstance(items, str):
            raise self.error(iterable, "for loops over a list or range(...), got %s" % describe(items))
        for item in items:
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise self.error(node, "building the net takes over %d loop iterations" % MAX_ITERATIONS,
                                 "nets have thousands of layers at most; check the loop bounds")
            if len(names) == 1:
                scope[str(names[0])] = item
            elif isinstance(item, (list, tuple)) and len(item) == len(names):
                for n, v in zip(names, item):
                    scope[str(n)] = v
            else:
                raise self.error(node, "cannot unpack %s into %d names" % (describe(item), len(names)))
            self.run_body(body, scope)

    def s_if_stmt(self, node, scope):
        cond, body, *rest = node.children
        if self.truth(cond, scope):
            self.run_body(body, scope)
        elif rest:
            other = rest[0]
            if other.data == "if_stmt":
                self.s_if_stmt(other, scope)
            else:
                self.run_body(other, scope)

    def s_return_stmt(self, node, scope):
        if not self.stack:
            raise self.error(node, "return outside a block")
        values = [self.eval(c, scope) for c in node.children]
        raise _Return(values[0] if len(values) == 1 else tuple(values))

    def s_input_stmt(self, node, scope):
        if self.net is None:
            raise self.error(node, "inputs belong inside a net or a block")
        items = [c for c in node.children if isinstance(c, Tree)]
        name = self.layer_name([c for c in node.children if isinstance(c, Token)], scope)
        batch = 1
        for item in items:
            if item.data == "input_option":
                key, expr = item.children
                if str(key) != "batch":
                    raise self.error(key, "unknown input option '%s'" % key, "the one option is batch=N")
                batch = self.eval(expr, scope)
                if not _is_int(batch) or not 0 < batch < MAX_DIM:
                    raise self.error(expr, "batch is a positive integer, got %s" % describe(batch))
        param = caffe_pb2.LayerParameter(name=name or "input", type="Input")
        for item in items:
            if item.data != "input_blob":
                continue
            blob, expr = item.children
            dims = self.eval(expr, scope)
            dims = [dims] if _is_int(dims) else dims
            if not isinstance(dims, (list, tuple)) or not all(_is_int(d) for d in dims):
                raise self.error(expr, "an input's shape is like 3x224x224 (without the batch), got %s"
                                 % describe(dims))
            bad = [d for d in dims if not 0 < d < MAX_DIM]
            if bad:
                raise self.error(expr, "input dimension %d in %s is out of range" % (
                    bad[0], "x".join(map(str, dims))), "every dimension is a positive integer")
            param.top.append(str(blob))
            param.input_param.shape.add().dim.extend([batch] + list(dims))
            scope[str(blob)] = BlobRef(str(blob))
        self.add_layer(param, node)

    def s_expect_stmt(self, node, scope):
        blob_node, dims_node = node.children
        blob = self.eval(blob_node, scope)
        dims = self.eval(dims_node, scope)
        dims = [dims] if _is_int(dims) else dims
        if not isinstance(blob, BlobRef):
            raise self.error(blob_node, "expect checks a blob's shape, got %s" % describe(blob))
        if not isinstance(dims, (list, tuple)) or not all(_is_int(d) for d in dims):
            raise self.error(dims_node, "expect's shape is like 256x28x28 (without the batch), got %s"
                             % describe(dims))
        if self.net is None:
            raise self.error(node, "expect belongs inside a net or a block")
        line, col = dsl_parse.token_pos(node)
        self.net.expects.append(Expect(blob.name, list(dims), self.writers.get(blob.name),
                                       self.module.file, line, col, self.module.lines))

    def s_phase_stmt(self, node, scope):
        name, body = node.children
        if str(name) not in ("TRAIN", "TEST"):
            raise self.error(name, "phase is TRAIN or TEST, got %s" % name)
        if self.phase is not None and self.phase != str(name):
            raise self.error(name, "phase %s inside phase %s: its layers would never run" % (name, self.phase))
        outer, self.phase = self.phase, str(name)
        try:
            self.run_body(body, scope)
        finally:
            self.phase = outer

    # -- expressions ---------------------------------------------------------------------
    def eval(self, node, scope, naming=None):
        return getattr(self, "e_" + node.data)(node, scope, naming)

    def truth(self, node, scope):
        v = self.eval(node, scope)
        if not isinstance(v, bool):
            raise self.error(node, "a condition is true or false, got %s" % describe(v))
        return v

    def e_int(self, node, scope, naming):
        return int(node.children[0])

    def e_float(self, node, scope, naming):
        return float(node.children[0])

    def e_shape(self, node, scope, naming):
        return [int(d) for d in node.children[0].split("x")]

    def e_true(self, node, scope, naming):
        return True

    def e_false(self, node, scope, naming):
        return False

    def e_none(self, node, scope, naming):
        return UNSET

    def e_string(self, node, scope, naming):
        tok = node.children[0]
        parts = self.module.templates.get(id(tok))
        if parts is None:
            parts = self.module.templates[id(tok)] = self.parse_template(tok)
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(format_value(self.eval(part, scope)))
                except _Fail as e:
                    raise self.error(part, str(e)) from None
        return "".join(out)

    def parse_template(self, tok):
        """"res{stage}{letter(i)}_branch2a" -> ["res", <tree>, <tree>, "_branch2a"]."""
        raw = str(tok)[1:-1]
        escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}
        parts, text, i = [], [], 0
        while i < len(raw):
            c = raw[i]
            if c == "\\" and i + 1 < len(raw):
                text.append(escapes.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            elif c in "{}" and raw[i + 1:i + 2] == c:
                text.append(c)
                i += 2
            elif c == "{":
                end = raw.find("}", i)
                if end < 0:
                    raise dsl_parse.located(self.module.file, self.module.lines, tok.line, tok.column + 1 + i,
                                            "unclosed { in a string", "write {{ for a brace itself")
                if text:
                    parts.append("".join(text))
                    text = []
                col0 = tok.column + 1 + i
                tree = dsl_parse.parse(raw[i + 1:end], self.module.file, start="expr",
                                       line_offset=tok.line - 1, col_offset=col0, lines=self.module.lines)
                _shift(tree, tok.line - 1, col0)
                parts.append(tree)
                i = end + 1
            elif c == "}":
                raise dsl_parse.located(self.module.file, self.module.lines, tok.line, tok.column + 1 + i,
                                        "unmatched } in a string", "write }} for a brace itself")
            else:
                text.append(c)
                i += 1
        if text or not parts:
            parts.append("".join(text))
        return parts

    def e_list(self, node, scope, naming):
        return [self.eval(c, scope) for c in node.children]

    def e_tuple(self, node, scope, naming):
        return tuple(self.eval(c, scope) for c in node.children)

    def e_message(self, node, scope, naming):
        items, nodes = {}, {}
        for pair in node.children:
            key_node, expr = pair.children
            key = str(key_node.children[0])
            if key in items:
                raise self.error(key_node, "%s is given twice" % key)
            items[key] = self.eval(expr, scope)
            nodes[key] = key_node
        return Message(items, nodes)

    def e_var(self, node, scope, naming):
        name = str(node.children[0])
        found = self.lookup(name, scope)
        if found is not None:
            return found
        if name.isupper():
            return Enum(name)
        if name[0].isupper():
            return op_for_type(name)
        raise self.undefined(node.children[0], name, scope)

    def lookup(self, name, scope):
        for space in (scope, self.module.names, BUILTINS, OPS):
            if name in space:
                return space[name]
        return None

    def undefined(self, tok, name, scope, called=False):
        if called:
            known = [n for n, v in self.module.names.items() if isinstance(v, BlockDef)] + list(BUILTINS) + list(OPS)
            message = "no block, layer or function named '%s'" % name
            hint = _suggest(name, known) or "define it with `block %s(...) { }`, or import the file " \
                "that does; Caffe types are called by their name, e.g. PriorBox(...)" % name
        else:
            known = list(scope) + list(self.module.names) + list(BUILTINS) + list(OPS)
            message = "undefined name '%s': no blob or value of that name here" % name
            hint = _suggest(name, known) or "blobs come from `input` statements and layers; assign one first"
        return self.error(tok, message, hint)

    def e_cond(self, node, scope, naming):
        a, cond, b = node.children
        return self.eval(a if self.truth(cond, scope) else b, scope, naming)

    def e_or_(self, node, scope, naming):
        return self.truth(node.children[0], scope) or self.truth(node.children[1], scope)

    def e_and_(self, node, scope, naming):
        return self.truth(node.children[0], scope) and self.truth(node.children[1], scope)

    def e_not_(self, node, scope, naming):
        return not self.truth(node.children[0], scope)

    def _compare(op):
        def run(self, node, scope, naming):
            a, b = (self.eval(c, scope) for c in node.children)
            if op in ("eq", "ne"):
                same = (a.name == b.name) if isinstance(a, BlobRef) and isinstance(b, BlobRef) else \
                    (type(a) is type(b) or _number(a) and _number(b)) and a == b
                return same if op == "eq" else not same
            if not (_number(a) and _number(b)) and not (isinstance(a, str) and isinstance(b, str)):
                raise self.error(node, "cannot compare %s with %s" % (describe(a), describe(b)))
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
        return run

    e_eq, e_ne, e_lt = _compare("eq"), _compare("ne"), _compare("lt")
    e_le, e_gt, e_ge = _compare("le"), _compare("gt"), _compare("ge")

    def e_add(self, node, scope, naming):
        # a + b + c is one Eltwise with three bottoms, as Caffe nets write it.
        terms = []
        n = node
        while isinstance(n, Tree) and n.data == "add":
            terms.append(n.children[1])
            n = n.children[0]
        terms.append(n)
        values = [self.eval(t, scope) for t in reversed(terms)]
        if all(isinstance(v, BlobRef) for v in values):
            return self.make_layer(ADD, values, {}, naming or Naming(), node)
        if all(_number(v) for v in values):
            return sum(values)
        if all(isinstance(v, str) and not isinstance(v, Enum) for v in values):
            return "".join(values)
        raise self.error(node, "cannot add %s" % " and ".join(describe(v) for v in values),
                         "+ adds numbers, joins strings, or sums blobs (Eltwise)")

    def _arith(op):
        def run(self, node, scope, naming):
            a, b = (self.eval(c, scope) for c in node.children)
            if op == "mul" and isinstance(a, list) and _is_int(b):     # [64] * 3
                if len(a) * b > MAX_ITERATIONS:
                    raise self.error(node, "a list of %d values is too long" % (len(a) * b))
                return a * b
            if not (_number(a) and _number(b)):
                raise self.error(node, "cannot apply %s to %s and %s" % (
                    {"sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%"}[op], describe(a), describe(b)))
            if op in ("div", "floordiv", "mod") and b == 0:
                raise self.error(node, "division by zero")
            if op == "sub":
                return a - b
            if op == "mul":
                return a * b
            if op == "floordiv":
                return a // b
            if op == "mod":
                return a % b
            if _is_int(a) and _is_int(b):
                # Channels and sizes are integers: 256 / 3 is a mistake, not 85.33.
                if a % b:
                    raise self.error(node, "%d / %d is not a whole number" % (a, b), "use // to round down")
                return a // b
            return a / b
        return run

    e_sub, e_mul, e_div = _arith("sub"), _arith("mul"), _arith("div")
    e_floordiv, e_mod = _arith("floordiv"), _arith("mod")

    def e_neg(self, node, scope, naming):
        v = self.eval(node.children[0], scope)
        if not _number(v):
            raise self.error(node, "cannot negate %s" % describe(v))
        return -v

    def e_index(self, node, scope, naming):
        seq, idx = (self.eval(c, scope) for c in node.children)
        if not isinstance(seq, (list, tuple, str)) or not _is_int(idx):
            raise self.error(node, "cannot index %s with %s" % (describe(seq), describe(idx)))
        if not -len(seq) <= idx < len(seq):
            raise self.error(node.children[1], "index %d is out of range for %d values" % (idx, len(seq)))
        return seq[idx]

    def e_named(self, node, scope, naming):
        inner, name_tok = node.children
        naming = Naming(self.layer_name([name_tok], scope), (naming or Naming()).targets,
                        (naming or Naming()).chain_target)
        value = self.eval(inner, scope, naming)
        if not naming.used:
            raise self.error(name_tok, "`as` names a layer, and this makes none",
                             "blocks name their own layers: pass the name as an argument")
        return value

    def layer_name(self, toks, scope):
        """`as NAME` or `as "templ{ate}"` -> the layer name, or None."""
        if not toks:
            return None
        tok = toks[0]
        if tok.type == "NAME":
            return str(tok)
        name = self.e_string(Tree("string", [tok]), scope, None)
        if not name:
            raise self.error(tok, "a layer name cannot be empty")
        return name

    def e_call(self, node, scope, naming):
        callee = self.callee(node.children[0], scope)
        args = node.children[1] if len(node.children) > 1 else None
        pos, kw = self.eval_args(args, scope)
        return self.call(callee, pos, kw, naming, node)

    def callee(self, node, scope):
        if isinstance(node, Tree) and node.data == "var":
            name = str(node.children[0])
            found = self.lookup(name, scope)
            if found is None and name[0].isupper():
                return op_for_type(name)    # LRN(...), PriorBox(...): any Caffe type
            if found is None:
                raise self.undefined(node.children[0], name, scope, called=True)
            return found
        return self.eval(node, scope)

    def eval_args(self, args, scope):
        """-> (positional values, {key: (value, key node)}); pos.nodes locates each value."""
        pos, kw = _Positional(), {}
        for a in (args.children if args is not None else ()):
            if isinstance(a, Tree) and a.data == "kwarg":
                key_node, expr = a.children
                key = str(key_node.children[0])
                if key in kw:
                    raise self.error(key_node, "%s is given twice" % key)
                kw[key] = (self.eval(expr, scope), key_node)
            else:
                if kw:
                    raise self.error(a, "a positional argument after keyword arguments")
                pos.append(self.eval(a, scope))
                pos.nodes.append(a)
        return pos, kw

    def e_chain(self, node, scope, naming):
        naming = naming or Naming()
        links = node.children
        calls = [self.link_call(link, scope) for link in links[1:]]
        # The last link that makes a new blob takes the assignment's name; the layers
        # before it are named after it (see the module docstring).
        result = max([i + 1 for i, (callee, _, args, _) in enumerate(calls)
                      if isinstance(callee, Op) and (not callee.in_place or _has_top(args))], default=0)
        target = naming.targets[0] if naming.targets else None

        def naming_for(i, as_name):
            if i == result:
                return Naming(as_name, naming.targets, target)
            return Naming(as_name, None, target)

        value = self.eval(links[0], scope, naming_for(0, None))
        for i, (callee, as_tok, args, link) in enumerate(calls, 1):
            if value is None:
                raise self.error(link, "nothing flows into this link: the layer before has no top")
            pos, kw = self.eval_args(args, scope)
            incoming = _Positional(value if isinstance(value, tuple) else [value])
            incoming.nodes = [link] * len(incoming)
            n = naming_for(i, self.layer_name([as_tok] if as_tok is not None else [], scope))
            value = self.call(callee, incoming + pos, kw, n, link)
            if as_tok is not None and not n.used:
                raise self.error(as_tok, "`as` names a layer, and this makes none",
                                 "blocks name their own layers: pass the name as an argument")
        return value

    def link_call(self, link, scope):
        """A link after `->`: (callee, `as` token, args tree, node)."""
        as_tok = None
        inner = link
        if isinstance(link, Tree) and link.data == "named":
            inner, as_tok = link.children
        if isinstance(inner, Tree) and inner.data == "call":
            callee = self.callee(inner.children[0], scope)
            args = inner.children[1] if len(inner.children) > 1 else None
        elif isinstance(inner, Tree) and inner.data == "var":
            callee, args = self.callee(inner, scope), None
        else:
            raise self.error(inner, "after -> comes a layer or a block: conv(64), relu, my_block(...)")
        if not isinstance(callee, (Op, BlockDef)):
            raise self.error(inner, "after -> comes a layer or a block, not %s" % describe(callee),
                             _shadow_hint(inner))
        return callee, as_tok, args, inner

    # -- calls ---------------------------------------------------------------------------
    def call(self, callee, pos, kw, naming, node):
        if isinstance(callee, Op):
            return self.make_layer(callee, pos, kw, naming or Naming(), node)
        if isinstance(callee, BlockDef):
            if naming is not None and naming.as_name is not None:
                raise self.error(node, "`as` names a layer; block %s names its own layers" % callee.name,
                                 "pass the name as an argument")
            return self.call_block(callee, pos, kw, node)
        if isinstance(callee, Builtin):
            if kw:
                raise self.error(node, "%s takes no keyword arguments" % callee.name, callee.usage)
            try:
                return callee.fn(*pos)
            except _Fail as e:
                raise self.error(node, str(e), callee.usage) from None
            except TypeError:
                raise self.error(node, "wrong arguments for %s" % callee.name, callee.usage) from None
        raise self.error(node, "%s cannot be called" % describe(callee), _shadow_hint(node.children[0]))

    def call_block(self, block, pos, kw, node):
        if block in self.stack:
            chain = " -> ".join(b.name for b in self.stack[self.stack.index(block):] + [block])
            raise self.error(node, "recursive block: %s" % chain,
                             "a block cannot call itself; repeat layers with a for loop")
        names = [p for p, _ in block.params]
        if len(pos) > len(names):
            raise self.error(node, "block %s takes %d argument%s, got %d" % (
                block.name, len(names), "" if len(names) == 1 else "s", len(pos)), block.signature())
        values = dict(zip(names, pos))
        for key, (v, key_node) in kw.items():
            if key not in names:
                raise self.error(key_node, "block %s has no parameter '%s'" % (block.name, key),
                                 _suggest(key, names) or block.signature())
            if key in values:
                raise self.error(key_node, "%s is given twice (by position and by name)" % key)
            values[key] = v
        missing = [p for p, default in block.params if p not in values and default is None]
        if missing:
            raise self.error(node, "block %s needs argument '%s'" % (block.name, missing[0]), block.signature())
        outer = self.module
        self.module = block.module
        try:
            for p, default in block.params:
                if p not in values:
                    values[p] = self.eval(default, {})
            self.stack.append(block)
            try:
                self.run_body(block.body, values)
            except _Return as r:
                return r.value
            finally:
                self.stack.pop()
        finally:
            self.module = outer
        return None

    def make_layer(self, op, pos, kw, naming, node):
        if self.net is None:
            raise self.error(node, "layers belong inside a net or a block")
        bottoms, params = [], []
        for v, v_node in zip(pos, getattr(pos, "nodes", [node] * len(pos))):
            blobs = _blobs(v)
            if blobs is not None and not params:
                bottoms.extend(blobs)
            elif blobs is not None:
                raise self.error(v_node, "blob '%s' comes after %s's parameters" % (blobs[0].name, op.name),
                                 "give the input blobs first: %s(x, ...) or x -> %s(...)" % (op.name, op.name))
            else:
                params.append((v, v_node))
        param = caffe_pb2.LayerParameter(type=op.type)
        main = getattr(param, op.param_field) if op.param_field else None
        if len(params) > len(op.positional):
            expected = ", ".join(op.positional) or "none"
            raise self.error(node, "%s takes %d positional parameter%s (%s), got %d" % (
                op.name, len(op.positional), "" if len(op.positional) == 1 else "s", expected, len(params)),
                "give the others by name, e.g. %s(%s=...)" % (op.name, _first_field(main)))
        given = {}
        try:
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
                elif key in ("name", "type", "bottom"):
                    raise FieldError("%s is not a keyword" % key,
                                     {"name": "name a layer with `as NAME`",
                                      "type": "call the type: conv(...), ReLU(...), PriorBox(...)",
                                      "bottom": "pass the input blobs first: op(x, y, ...) or x -> op(...)"}[key],
                                     key_node)
                elif key in ("lr_mult", "decay_mult"):
                    mults[key] = (v, key_node)
                elif main is not None and fname in main.DESCRIPTOR.fields_by_name:
                    if fname in given:
                        raise FieldError("%s is given twice (by position and by name)" % fname, None, key_node)
                    given[fname] = key_node
                    set_field(main, fname, v, key_node)
                elif key in LAYER_FIELDS:
                    set_field(param, key, v, key_node)
                else:
                    known = list(op.short) + list(LAYER_FIELDS) + \
                        ([f.name for f in main.DESCRIPTOR.fields] if main is not None else [])
                    where = "%s (%s)" % (op.name, op.type) if op.name != op.type else op.type
                    raise FieldError("%s has no parameter '%s'" % (where, key), _suggest(key, known), key_node)
            if mults:
                self.param_mults(param, mults)
        except FieldError as e:
            raise self.error(e.node, e.message, e.hint) from None
        if op.in_place and top is None:
            if not bottoms:
                raise self.error(node, "%s needs an input blob: x -> %s" % (op.name, op.name))
            name = naming.as_name or "%s_%s" % (bottoms[0].name, op.name)
            tops = [bottoms[0].name]
        else:
            if naming.as_name:
                name = naming.as_name
            elif naming.targets:
                name = naming.targets[0]
            elif naming.chain_target:
                name = "%s_%s" % (naming.chain_target, op.name)
            else:
                raise self.error(node, "this %s layer needs a name" % op.name,
                                 "assign it (y = ...) or name it (... as NAME)")
            if top is not None:
                tops = _top_names(top)
                if tops is None:
                    raise self.error(kw["top"][1], "top is a blob name or a list of them, got %s" % describe(top))
            elif naming.targets:
                tops = [naming.as_name] if naming.as_name and len(naming.targets) == 1 else list(naming.targets)
            elif op.tops == 0:
                tops = []
            else:
                tops = [name]
        param.name = name
        param.bottom.extend(b.name for b in bottoms)
        param.top.extend(tops)
        self.add_layer(param, node)
        naming.used = True
        if not tops:
            return None
        return BlobRef(tops[0]) if len(tops) == 1 else tuple(BlobRef(t) for t in tops)

    def param_mults(self, param, mults):
        """lr_mult=[1, 2], decay_mult=[1, 0] -> param { lr_mult: 1 decay_mult: 1 } param {...}."""
        if param.param:
            node = next(iter(mults.values()))[1]
            raise FieldError("give lr_mult/decay_mult or param=[...], not both", None, node)
        for key, (v, key_node) in mults.items():
            values = list(v) if isinstance(v, (list, tuple)) else [v]
            while len(param.param) < len(values):
                param.param.add()
            for spec, x in zip(param.param, values):
                set_field(spec, key, x, key_node)

    def add_layer(self, param, node):
        if self.phase is not None:
            if param.exclude:
                raise self.error(node, "a layer with exclude rules inside phase %s" % self.phase,
                                 "give it include rules instead, or move it out of the phase block")
            if not param.include:
                param.include.add()
            for rule in param.include:
                if rule.HasField("phase") and caffe_pb2.Phase.Name(rule.phase) != self.phase:
                    raise self.error(node, "an include rule for phase %s inside phase %s: the layer "
                                     "would never run" % (caffe_pb2.Phase.Name(rule.phase), self.phase))
                rule.phase = caffe_pb2.Phase.Value(self.phase)
        line, col = dsl_parse.token_pos(node)
        self.net.layers.append(Made(param, self.module.file, line, col, self.module.lines))
        for t in param.top:
            self.writers[t] = len(self.net.layers) - 1


def _shift(tree, dline, dcol):
    """Move a template expression's positions from its own text to the file."""
    for sub in tree.iter_subtrees():
        if not sub.meta.empty:
            if sub.meta.line == 1:
                sub.meta.column += dcol
            sub.meta.line += dline
        for tok in sub.children:
            if isinstance(tok, Token) and tok.line is not None:
                if tok.line == 1:
                    tok.column += dcol
                tok.line += dline


def _shadow_hint(node):
    """When a variable hides a layer or function of the same name (a parameter `relu`)."""
    if isinstance(node, Tree) and node.data == "var":
        name = str(node.children[0])
        if name in OPS or name in BUILTINS:
            return "a variable named '%s' hides the built-in %s; rename the variable" % (name, name)
    return None


class _Positional(list):
    """Positional arguments, with the syntax node of each for error locations."""

    def __init__(self, values=()):
        super().__init__(values)
        self.nodes = []

    def __add__(self, other):
        out = _Positional(list(self) + list(other))
        out.nodes = self.nodes + getattr(other, "nodes", [None] * len(other))
        return out


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _has_top(args):
    return args is not None and any(isinstance(a, Tree) and a.data == "kwarg" and
                                    str(a.children[0].children[0]) == "top" for a in args.children)


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


def _first_field(main):
    return main.DESCRIPTOR.fields[0].name if main is not None else "..."


# -- modules --------------------------------------------------------------------------------

def read_source(path):
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            raise NetdefError(str(path), None, None, "file is over %d MB; not a netdef source" % (MAX_SOURCE_BYTES >> 20))
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise NetdefError(str(path), None, None, "cannot read: %s" % (e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise NetdefError(str(path), None, None, "not a text file (byte %d is not UTF-8)" % e.start) from None


def load_module(path, text=None, _loading=None, _cache=None):
    """Parse a .net file and define its blocks, constants and nets (imports first)."""
    path = Path(path)
    key = path.resolve()
    _loading = _loading if _loading is not None else []
    _cache = _cache if _cache is not None else {}
    if key in _cache:
        return _cache[key]
    file = str(path)
    if text is None:
        text = read_source(path)
    tree = dsl_parse.parse(text, file)
    module = Module(file, text)
    interp = Interpreter(module)
    _loading.append(key)
    for item in tree.children:
        if item.data == "import_stmt":
            tok = item.children[0]
            rel = interp.e_string(Tree("string", [tok]), {}, None)
            target = (path.parent / rel)
            if target.resolve() in _loading:
                raise interp.error(tok, "import cycle: %s imports %s, which is being loaded" % (path.name, rel))
            if not target.is_file():
                raise interp.error(tok, "cannot import %s: no such file" % rel,
                                   "paths are relative to %s" % (path.parent or "."))
            sub = load_module(target, None, _loading, _cache)
            for name in sub.own:
                define(interp, module, name, sub.names[name], tok, sub.defined_at[name])
        elif item.data == "block_def":
            name_tok, *params, body = item.children
            seen = []
            plist = []
            for p in params:
                pname = str(p.children[0])
                default = p.children[1] if len(p.children) > 1 else None
                if pname in seen:
                    raise interp.error(p, "parameter '%s' is listed twice" % pname)
                if default is None and any(d is not None for _, d in plist):
                    raise interp.error(p, "parameter '%s' without a default after one with a default" % pname,
                                       "list the parameters without defaults first")
                seen.append(pname)
                plist.append((pname, default))
            block = BlockDef(str(name_tok), plist, body, module, item)
            define(interp, module, str(name_tok), block, name_tok)
            module.own.append(str(name_tok))
        elif item.data == "net_def":
            name_tok = item.children[0]
            name = str(name_tok) if name_tok.type == "NAME" else interp.e_string(Tree("string", [name_tok]), {}, None)
            if name in module.nets:
                first = dsl_parse.token_pos(module.nets[name].children[0])[0]
                raise interp.error(name_tok, "duplicate net name '%s'" % name, "first declared at line %s" % first)
            module.nets[name] = item
        else:   # a constant: depths = [3, 4, 6, 3]
            *names, expr = item.children
            interp.s_assign(item, module.names)
            for n in names:
                module.defined_at.setdefault(str(n), (file, n.line))
                module.own.append(str(n))
    _loading.pop()
    _cache[key] = module
    return module


def define(interp, module, name, value, tok, origin=None):
    if name in OPS or name in BUILTINS:
        raise interp.error(tok, "'%s' is a built-in %s; a block cannot take its name" % (
            name, "layer" if name in OPS else "function"), "choose another name, e.g. my_%s" % name)
    if name in module.names:
        f, line = module.defined_at[name]
        raise interp.error(tok, "duplicate name '%s'" % name, "already defined at %s:%s" % (f, line))
    module.names[name] = value
    module.defined_at[name] = origin or (module.file, tok.line)


def build_net(module, net=None):
    """Run one net of a loaded module: -> NetSpec with every layer of every phase."""
    if not module.nets:
        raise NetdefError(module.file, None, None, "no net in this file",
                          "declare one: net \"MyNet\" { input data: 3x224x224 ... }")
    if net is None:
        if len(module.nets) > 1:
            raise NetdefError(module.file, None, None, "the file declares %d nets (%s); which one?" % (
                len(module.nets), ", ".join(module.nets)),
                "choose one with --net, e.g. netdef compile %s --net %s (in Python: name=...)"
                % (module.file, next(iter(module.nets))))
        net = next(iter(module.nets))
    if net not in module.nets:
        raise NetdefError(module.file, None, None, "no net named '%s' in this file (it has %s)" % (
            net, ", ".join(module.nets)), _suggest(net, list(module.nets)))
    node = module.nets[net]
    interp = Interpreter(module)
    interp.net = NetSpec(net, module.file, options=caffe_pb2.NetParameter())
    children = node.children[1:]
    if len(children) == 2:      # net "X" (force_backward=true) { ... }
        pos, kw = interp.eval_args(children[0], {})
        if pos:
            raise interp.error(children[0], "a net's options are given by name: net \"X\" (force_backward=true)")
        for key, (v, key_node) in kw.items():
            if key in ("name", "layer", "layers", "input", "input_dim", "input_shape"):
                raise interp.error(key_node, "%s is not a net option here" % key,
                                   "inputs are `input data: 3x224x224` statements; layers go in the body")
            try:
                set_field(interp.net.options, key, v, key_node)
            except FieldError as e:
                raise interp.error(e.node, e.message, e.hint) from None
    interp.run_body(children[-1], {})
    return interp.net


def load_spec(path, net=None, text=None):
    try:
        return build_net(load_module(path, text), net)
    except RecursionError:
        # Only absurd sources get here: expressions or imports nested hundreds deep.
        raise NetdefError(str(path), None, None, "the source nests too deeply to build",
                          "split deeply nested expressions into statements") from None


def load_dsl(path, state=NetState(), net=None, text=None):
    """A .net file -> an unwired IR Net of one NetState, as prototxt.load_net gives."""
    from compiler.passes.phase import filter_phase
    spec = load_spec(path, net, text)
    check_phase(spec, state)
    out = Net(spec.name, [_ir_layer(m) for m in spec.layers], file=str(path), state=state)
    filter_phase(out, state)
    return out


def load_proto(path, net=None, text=None):
    """A .net file -> the NetParameter of one net, every phase (what `netdef convert`
    writes), after the checks load_dsl makes, in both phases."""
    spec = load_spec(path, net, text)
    for phase in ("TRAIN", "TEST"):
        # Caffe itself accepts two layers of one name (mnist_autoencoder has two "loss"
        # layers); compiling refuses them, as weights are matched by name.
        check_phase(spec, NetState(phase), unique_names=False)
    return spec.to_proto()


def _ir_layer(made):
    return Layer(name=made.param.name, type=made.param.type, param=made.param, line=made.line, file=made.file)


def check_phase(spec, state, unique_names=True):
    """What the language checks on the layers of one phase: unique layer names (weights
    are matched by name) and the `expect` statements."""
    from compiler.passes.phase import layer_included
    kept, first, errors = [], {}, []
    for i, m in enumerate(spec.layers):
        try:
            if not layer_included(m.param, state):
                continue
        except ValueError:
            raise _made_error(m, "a layer may have include rules or exclude rules, not both") from None
        kept.append(i)
        if unique_names and m.param.name in first:
            f = first[m.param.name]
            errors.append(_made_error(m, "duplicate layer name '%s'" % m.param.name,
                                      "first made at %s:%s; name one of them with `as NAME`" % (f.file, f.line)))
        first.setdefault(m.param.name, m)
    if not errors:
        errors = _failed_expects(spec, kept)
    if errors:
        raise errors[0] if len(errors) == 1 else NetdefErrors(errors)


def _made_error(m, message, hint=None):
    return dsl_parse.located(m.file, m.lines, m.line, m.col, message, hint, m.param.name)


def _failed_expects(spec, kept):
    """`expect x: 256x28x28` statements, against the shapes of the net as declared (batch
    axis left out). The check needs the net to shape; if it does not, the compiler's own
    passes report why, so the expectations wait for a net that shapes."""
    if not spec.expects:
        return []
    from compiler.passes.shapes import infer_shapes
    from compiler.passes.wiring import wire
    by_index = {i: _ir_layer(spec.layers[i]) for i in kept}
    net = Net(spec.name, list(by_index.values()), file=spec.file)
    try:
        wire(net)
        infer_shapes(net)
    except NetdefError:
        return []
    errors = []
    for e in spec.expects:
        writer = by_index.get(e.writer)
        if writer is None:
            continue    # the blob is made in another phase
        sid = writer.tops[list(writer.param.top).index(e.blob)]
        got = list(net.blobs[sid].shape[1:])
        if got != list(e.dims):
            errors.append(dsl_parse.located(e.file, e.lines, e.line, e.col, "expected blob '%s' to be %s, "
                                            "but it is %s" % (e.blob, _dims(e.dims), _dims(got)),
                                            "shapes are written without the batch axis (full shape %s)"
                                            % _dims(net.blobs[sid].shape)))
    return errors


def _dims(dims):
    return "x".join(str(d) for d in dims) if dims else "a scalar per item"

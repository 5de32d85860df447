"""The netdef language's interpreter: statements and expressions, node by node over the
parse tree (syntax.py). User text is never handed to Python's eval.

Building a net runs its body: statements bind variables to values (values.py), calls run
blocks and builtins (builtins.py), and each layer call appends one LayerParameter
(layers.py) to the net being built, as a prototxt would declare it. `phase X { }` adds
the include rule; `expect` records a shape assertion that the compiler checks after
shape inference (compiler/passes/expectations.py).
"""
import operator

from lark import Token, Tree

from compiler.errors import NetdefError
from compiler.frontends.dsl import syntax
from compiler.frontends.dsl.builtins import BUILTINS, Builtin
from compiler.frontends.dsl.layers import Naming, layer_param
from compiler.frontends.dsl.values import (INT_RANGE_HINT, MAX_INT, MAX_ITERATIONS, UNSET, BlockDef, BlobRef,
                                           Complaint, Enum, Message, Nothing, bounded, describe, format_value,
                                           is_int, is_number, suggest)
from compiler.ir import Layer, ShapeExpectation
from compiler.layers import registry
from compiler.proto import caffe_pb2
from grammar import SUM_OP
from grammar.spelling import Spelling, short_names

_ARITH = {"sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv, "mod": operator.mod}

# BlobShape dims are int64: a larger number would make protobuf raise, not report.
MAX_DIM = 1 << 63


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Interpreter:
    def __init__(self, module):
        self.module = module
        self.net = None         # the NetSpec being built; None while loading a module
        self.phase = None
        self.stack = []         # blocks being called, for the recursion check
        self.sites = []         # their call sites (call_site), outermost first
        self.writers = {}       # blob name -> the layer (compiler.ir.Layer) that last wrote it
        self.iterations = 0     # loop iterations so far, against MAX_ITERATIONS
        # The loops running in the block (or net) being run: [(name, value)] of each, for
        # the call sites that errors inside a block name.
        self.loops = []
        # The layers called by short names, as the registry has them when the build starts.
        self.ops = short_names()

    # -- errors --------------------------------------------------------------------------
    def error(self, node, message, hint=None):
        line, col = syntax.token_pos(node) if node is not None else (None, None)
        return syntax.located(self.module.file, self.module.lines, line, col, message, hint)

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
            self.loops.append([(str(n), scope[str(n)]) for n in names])
            try:
                self.run_body(body, scope)
            finally:
                self.loops.pop()

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
                if not is_int(batch) or not 0 < batch < MAX_DIM:
                    raise self.error(expr, "batch is a positive integer, got %s" % describe(batch))
        param = caffe_pb2.LayerParameter(name=name or "input", type="Input")
        for item in items:
            if item.data != "input_blob":
                continue
            blob, expr = item.children
            dims = self.eval(expr, scope)
            dims = [dims] if is_int(dims) else dims
            if not isinstance(dims, (list, tuple)) or not all(is_int(d) for d in dims):
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
        dims = [dims] if is_int(dims) else dims
        if not isinstance(blob, BlobRef):
            raise self.error(blob_node, "expect checks a blob's shape, got %s" % describe(blob))
        if not isinstance(dims, (list, tuple)) or not all(is_int(d) for d in dims):
            raise self.error(dims_node, "expect's shape is like 256x28x28 (without the batch), got %s"
                             % describe(dims))
        if self.net is None:
            raise self.error(node, "expect belongs inside a net or a block")
        line, col = syntax.token_pos(node)
        self.net.expected_shapes.append(ShapeExpectation(blob.name, tuple(dims), self.writers[blob.name],
                                                         self.module.file, line, col))

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

    def bounded(self, node, value):
        """value, or a located error if it is past the language's bounds (values.bounded)."""
        try:
            return bounded(value)
        except Complaint as e:
            raise self.error(node, e.message, e.hint) from None

    def number(self, tok):
        """An integer literal; one too long to be a value is refused before Python converts
        it (which is quadratic in its digits, and refused past 4300 of them)."""
        if len(tok) > len(str(MAX_INT)):
            raise self.error(tok, "an integer of %d digits is out of range" % len(tok), INT_RANGE_HINT)
        return self.bounded(tok, int(tok))

    def e_int(self, node, scope, naming):
        return self.number(node.children[0])

    def e_float(self, node, scope, naming):
        return float(node.children[0])

    def e_shape(self, node, scope, naming):
        tok = node.children[0]
        return [self.number(Token("INT", d, line=tok.line, column=tok.column)) for d in tok.split("x")]

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
            parts = self.module.templates[id(tok)] = syntax.parse_template(tok, self.module.file, self.module.lines)
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(format_value(self.eval(part, scope)))
                except Complaint as e:
                    raise self.error(part, e.message) from None
        return self.bounded(node, "".join(out))

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
        if isinstance(found, Nothing):
            raise self.error(node, "'%s' has no value: %s" % (name, found.why), found.hint)
        if found is not None:
            return found
        if name.isupper():
            return Enum(name)
        if name[0].isupper():
            return self.layer_type(node.children[0], name)
        raise self.undefined(node.children[0], name, scope)

    def layer_type(self, tok, name):
        """A type called by its Caffe name: a registered one, one that Caffe's schema has
        parameters for (Python, ROIPooling), or another, which the shapes pass reports
        unless a user registers it. A name that is none of these but close to a registered
        type is a misspelling, reported here rather than as its parameters' error."""
        spelling = Spelling(name)
        if registry.get(name) is None and spelling.param_field is None:
            close = registry.close_matches(name)
            if close:
                raise self.error(tok, "unknown layer type '%s'" % name, "did you mean %s?" % " or ".join(
                    "'%s'%s" % (t, " (%s)" % Spelling(t).name if Spelling(t).known else "") for t in close))
        return spelling

    def lookup(self, name, scope):
        for space in (scope, self.module.names, BUILTINS, self.ops):
            if name in space:
                return space[name]
        return None

    def undefined(self, tok, name, scope, called=False):
        if called:
            known = [n for n, v in self.module.names.items() if isinstance(v, BlockDef)] + list(BUILTINS) + list(self.ops)
            message = "no block, layer or function named '%s'" % name
            hint = suggest(name, known) or "define it with `block %s(...) { }`, or import the file " \
                "that does; Caffe types are called by their name, e.g. PriorBox(...)" % name
        else:
            known = list(scope) + list(self.module.names) + list(BUILTINS) + list(self.ops)
            message = "undefined name '%s': no blob or value of that name here" % name
            hint = suggest(name, known) or "blobs come from `input` statements and layers; assign one first"
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
                    (type(a) is type(b) or is_number(a) and is_number(b)) and a == b
                return same if op == "eq" else not same
            if not (is_number(a) and is_number(b)) and not (isinstance(a, str) and isinstance(b, str)):
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
            return self.make_layer(self.ops[SUM_OP], values, {}, naming or Naming(), node)
        if all(is_number(v) for v in values):
            return self.bounded(node, sum(values))
        if all(isinstance(v, str) and not isinstance(v, Enum) for v in values):
            return self.bounded(node, "".join(values))
        raise self.error(node, "cannot add %s" % " and ".join(describe(v) for v in values),
                         "+ adds numbers, joins strings, or sums blobs (Eltwise)")

    def _arith(op):
        def run(self, node, scope, naming):
            a, b = (self.eval(c, scope) for c in node.children)
            if op == "mul" and isinstance(a, list) and is_int(b):     # [64] * 3
                if len(a) * b > MAX_ITERATIONS:
                    raise self.error(node, "a list of %d values is too long" % (len(a) * b))
                return a * b
            if not (is_number(a) and is_number(b)):
                raise self.error(node, "cannot apply %s to %s and %s" % (
                    {"sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%"}[op], describe(a), describe(b)))
            if op in ("div", "floordiv", "mod") and b == 0:
                raise self.error(node, "division by zero")
            if op == "div" and is_int(a) and is_int(b) and a % b:
                # Channels and sizes are integers: 256 / 3 is a mistake, not 85.33.
                raise self.error(node, "%d / %d is not a whole number" % (a, b), "use // to round down")
            if op == "div":
                return a // b if is_int(a) and is_int(b) else a / b
            return self.bounded(node, _ARITH[op](a, b))
        return run

    e_sub, e_mul, e_div = _arith("sub"), _arith("mul"), _arith("div")
    e_floordiv, e_mod = _arith("floordiv"), _arith("mod")

    def e_neg(self, node, scope, naming):
        v = self.eval(node.children[0], scope)
        if not is_number(v):
            raise self.error(node, "cannot negate %s" % describe(v))
        return -v

    def e_index(self, node, scope, naming):
        seq, idx = (self.eval(c, scope) for c in node.children)
        if not isinstance(seq, (list, tuple, str)) or not is_int(idx):
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
                return self.layer_type(node.children[0], name)    # LRN(...), PriorBox(...): any Caffe type
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
                      if isinstance(callee, Spelling) and (not callee.in_place or _has_top(args))], default=0)
        target = naming.targets[0] if naming.targets else None

        def naming_for(i, as_name):
            if i == result:
                return Naming(as_name, naming.targets, target)
            return Naming(as_name, None, target)

        value = self.eval(links[0], scope, naming_for(0, None))
        for i, (callee, as_tok, args, link) in enumerate(calls, 1):
            if isinstance(value, Nothing):
                raise self.error(link, "nothing flows into this link: %s" % value.why, value.hint)
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
        if not isinstance(callee, (Spelling, BlockDef)):
            raise self.error(inner, "after -> comes a layer or a block, not %s" % describe(callee),
                             self.shadow_hint(inner))
        return callee, as_tok, args, inner

    def shadow_hint(self, node):
        """When a variable hides a layer or function of the same name (a parameter `relu`)."""
        if isinstance(node, Tree) and node.data == "var":
            name = str(node.children[0])
            if name in self.ops or name in BUILTINS:
                return "a variable named '%s' hides the built-in %s; rename the variable" % (name, name)
        return None

    # -- calls ---------------------------------------------------------------------------
    def call(self, callee, pos, kw, naming, node):
        if isinstance(callee, Spelling):
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
            except Complaint as e:
                raise self.error(node, e.message, callee.usage) from None
            except TypeError:
                raise self.error(node, "wrong arguments for %s" % callee.name, callee.usage) from None
        raise self.error(node, "%s cannot be called" % describe(callee), self.shadow_hint(node.children[0]))

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
                                 suggest(key, names) or block.signature())
            if key in values:
                raise self.error(key_node, "%s is given twice (by position and by name)" % key)
            values[key] = v
        missing = [p for p, default in block.params if p not in values and default is None]
        if missing:
            raise self.error(node, "block %s needs argument '%s'" % (block.name, missing[0]), block.signature())
        outer, outer_loops = self.module, self.loops
        site = self.call_site(block, node)
        self.module, self.loops = block.module, []
        try:
            for p, default in block.params:
                if p not in values:
                    values[p] = self.eval(default, {})
            self.stack.append(block)
            self.sites.append(site)
            try:
                self.run_body(block.body, values)
            except _Return as r:
                return r.value
            finally:
                self.stack.pop()
                self.sites.pop()
        except NetdefError as e:
            raise _called_from(e, site) from None
        finally:
            self.module, self.loops = outer, outer_loops
        return Nothing("block %s, called at line %s, ended without `return`" % (block.name, syntax.token_pos(node)[0]),
                       "end block %s (%s:%s) with `return` and the blob it makes" % (
                           block.name, block.module.file, syntax.token_pos(block.node)[0]))

    def call_site(self, block, node):
        """"in block 'b' called from line 87 (i = 3)": where a block is called, with the
        loop variables there, as a traceback of the user's file shows it."""
        line = syntax.token_pos(node)[0]
        where = "line %s" % line if self.module.file == block.module.file else "%s:%s" % (self.module.file, line)
        loops = ", ".join("%s = %s" % (name, _short(value)) for loop in self.loops for name, value in loop)
        return "in block '%s' called from %s%s" % (block.name, where, " (%s)" % loops if loops else "")

    def make_layer(self, op, pos, kw, naming, node):
        if self.net is None:
            raise self.error(node, "layers belong inside a net or a block")
        try:
            param = layer_param(op, pos, getattr(pos, "nodes", [None] * len(pos)), kw, naming)
        except Complaint as e:
            raise self.error(e.node or node, e.message, e.hint) from None
        self.add_layer(param, node)
        naming.used = True
        if not param.top:
            return Nothing("the %s layer '%s' (line %s) has no top"
                           % (param.type, param.name, syntax.token_pos(node)[0]),
                           "give it one with top=\"name\"")
        return BlobRef(param.top[0]) if len(param.top) == 1 else tuple(BlobRef(t) for t in param.top)

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
        layer = Layer(param.name, param.type, param, syntax.token_pos(node)[0], self.module.file)
        # Innermost first, as the errors raised inside a block name them (_called_from): the
        # checks after the build lead their errors at this layer with them too.
        layer.called_from = tuple(reversed(self.sites)) or None
        self.net.layers.append(layer)
        for t in param.top:
            self.writers[t] = layer


def _called_from(e, site):
    """An error raised inside a block, its message now led by the block's call sites,
    innermost first: "in block 'unit' called from line 12, in block 'stage' called from
    line 30 (i = 2): ..."."""
    if not hasattr(e, "call_sites"):
        e.call_sites, e.message_in_block = [], e.message
    e.call_sites.append(site)
    e.message = "%s: %s" % (", ".join(e.call_sites), e.message_in_block)
    return e


def _short(value):
    """A loop variable's value as a call site shows it: short."""
    text = format_value(value) if isinstance(value, (str, int, float, BlobRef)) else describe(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Positional(list):
    """Positional arguments, with the syntax node of each for error locations."""

    def __init__(self, values=()):
        super().__init__(values)
        self.nodes = []

    def __add__(self, other):
        out = _Positional(list(self) + list(other))
        out.nodes = self.nodes + getattr(other, "nodes", [None] * len(other))
        return out


def _has_top(args):
    return args is not None and any(isinstance(a, Tree) and a.data == "kwarg" and
                                    str(a.children[0].children[0]) == "top" for a in args.children)

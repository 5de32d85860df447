"""The values of the netdef language, and how messages name them.

Numbers, strings, booleans, lists and tuples are Python's own. The language adds blobs
(a variable holding `conv1` holds the blob, not a tensor), enum names (MAX, TRAIN),
message literals ({type="xavier"}) and `none`. Blocks, layers (grammar.spelling.Spelling) and builtin
functions are values too: they can be passed to a block and called there.
"""
import difflib

from grammar.spelling import Spelling

# Loops and lists longer than this are mistakes (a net of a million layers), not nets;
# it bounds the loop iterations of one whole build too, nested loops included.
MAX_ITERATIONS = 100000
# Values are bounded as loops are, so that a few lines cannot build one that takes hours
# or all memory to compute (a string doubled 34 times, an integer squared 40 times) or
# that Python cannot print or turn into a float. Every protobuf integer field fits in
# +-2^64; names and param_str fit in 64 Ki characters.
MAX_INT = 1 << 64
MAX_STRING = 1 << 16
INT_RANGE_HINT = "the language's integers are within +-2^64, as protobuf's fields are"


class _Unset:
    """`none`: a field given none is left unset (Caffe's default applies), so a block can
    pass an optional parameter through: conv(c, k=k, s=s) with s=none by default."""

    def __repr__(self):
        return "none"


UNSET = _Unset()


class Nothing:
    """What a block that ends without `return` gives, or a layer without tops (Silence):
    a variable may hold it, and using it is an error that says where it came from
    (`why`), not that the variable is undefined."""
    __slots__ = ("why", "hint")

    def __init__(self, why, hint=None):
        self.why, self.hint = why, hint

    def __repr__(self):
        return "Nothing(%r)" % self.why


class Enum(str):
    """A bare upper-case name (MAX, TRAIN, ACROSS_CHANNELS): an enum value, checked
    against the field it is given to."""


class BlobRef:
    """A blob, by its Caffe name. Variables hold these; a layer's value is its top(s)."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "BlobRef(%r)" % self.name


class Message(dict):
    """A message literal {type="xavier", std=0.01}: field name -> value, with the syntax
    nodes of the keys for error locations."""

    def __init__(self, items, nodes):
        super().__init__(items)
        self.nodes = nodes


class BlockDef:
    """A block: a parametric group of layers, called like a layer (`block name(x, c, s=1)`).
    `module` is the file that defines it: its body sees that file's names."""

    def __init__(self, name, params, body, module, node):
        self.name, self.params, self.body, self.module, self.node = name, params, body, module, node

    def signature(self):
        return "%s(%s)" % (self.name, ", ".join(p if d is None else "%s=..." % p for p, d in self.params))


class Complaint(Exception):
    """A problem found by code that does not know where in the source it is (a builtin,
    a field conversion, the layer naming rules): the interpreter locates it at `node`,
    or else at the construct it is evaluating."""

    def __init__(self, message, hint=None, node=None):
        super().__init__(message)
        self.message, self.hint, self.node = message, hint, node


def bounded(v):
    """v, if within the language's bounds; else a Complaint saying which is passed."""
    if is_int(v) and not -MAX_INT <= v <= MAX_INT:
        raise Complaint("an integer of %d bits is out of range" % v.bit_length(), INT_RANGE_HINT)
    if isinstance(v, str) and len(v) > MAX_STRING:
        raise Complaint("a string of %d characters is too long (at most %d)" % (len(v), MAX_STRING))
    return v


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def format_value(v):
    """A value as a template writes it: "res{stage}{letter(i)}"."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, BlobRef):
        return v.name
    if isinstance(v, (str, int, float)):
        return str(v)
    raise Complaint("%s cannot be written into a name" % describe(v))


def describe(v):
    """A value as error messages name it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is UNSET:
        return "none"
    if isinstance(v, Nothing):
        return "nothing (%s)" % v.why
    if isinstance(v, Enum):
        return "the name %s" % v
    if isinstance(v, BlobRef):
        return "the blob '%s'" % v.name
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Message):
        return "a message"
    if isinstance(v, (list, tuple)):
        return "a list" if isinstance(v, list) else "%d values" % len(v)
    if isinstance(v, Spelling):
        return "the layer %s" % v.name
    return "a %s" % type(v).__name__.lower()


def suggest(name, choices):
    """The hint for a name that is not there: the closest ones that are."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return ("did you mean %s?" % " or ".join("'%s'" % c for c in close)) if close else None


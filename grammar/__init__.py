"""The netdef language's definition, shared by its reader (compiler/frontends/dsl/) and
its writer (compiler/backends/dsl_writer.py): the grammar (shipped as package data,
setup.py: grammar/*.lark) and the names a .net file cannot use for its own variables.
How the language calls each layer type is in the type's LayerDef (dsl_name,
dsl_positional, dsl_abbreviations, in_place), read through spelling.py."""
import re
from pathlib import Path

NETDEF_GRAMMAR = Path(__file__).with_name("netdef.lark")

# The grammar's reserved words: every quoted word in it ("import", "block", "net", ...).
KEYWORDS = frozenset(re.findall(r'"([a-z]+)"', NETDEF_GRAMMAR.read_text(encoding="utf-8")))
# The functions every .net file can call (the reader implements them).
BUILTIN_FUNCTIONS = ("range", "letter", "len", "str", "min", "max", "enumerate")
# `a + b` is an Eltwise SUM, written and named as a call of `add(a, b)` would be.
SUM_OP = "add"

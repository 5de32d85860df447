"""The netdef language (docs/dsl.md): .net files -> Caffe layers.

A .net file declares blocks (parametric groups of layers), constants and nets. Building
a net runs its body and gives the LayerParameters a prototxt would declare, so the rest
of netdef (phases, wiring, shapes, torch, weights by layer name) sees no difference.

One idea per file, in the order a build uses them:
- syntax.py: the parser (grammar/netdef.lark), string templates, and syntax errors with
  file:line:col;
- values.py: the language's values (blobs, enum names, message literals, blocks, none);
- builtins.py: range, letter, len, str, min, max, enumerate;
- fields.py: a value -> a protobuf field;
- layers.py: one layer call -> one LayerParameter, and the naming rules (how each type
  is called, conv(64, k=3), is its LayerDef's, read through grammar/spelling.py);
- interpreter.py: statements and expressions over the parse tree;
- modules.py: a file, its imports, blocks and constants;
- nets.py: building one net -> the unwired IR Net (load_dsl) or its NetParameter (load_proto).
"""
from compiler.frontends.dsl.modules import load_module
from compiler.frontends.dsl.nets import build_net, load_dsl, load_proto, load_spec

__all__ = ["build_net", "load_dsl", "load_module", "load_proto", "load_spec"]

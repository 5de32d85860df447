"""The package's layout holds: stages import one way only, and nothing imports in a cycle.

Read from the source with ast (every import, those inside functions included), so a lazy
import cannot hide an import against the direction or a cycle.
"""
import ast

import networkx as nx

from tests.conftest import ROOT

PACKAGES = ("compiler", "netdef", "grammar")

# Which parts each part may import. The IR, the layer definitions, the schema, the errors
# and the accounting lie beneath every stage; a frontend reads files into the IR and runs
# no pass; a pass works on the IR; the pipeline reads and runs the passes; a backend turns
# a checked net into something else (a module, a file, a picture) and may re-run passes on
# a net it rewrites (fold), never a frontend. `netdef` (the API, the CLI, and the rooms
# above the compiler: training, data, inference) builds on all of it; the compiler never
# imports it. The runtime (compiler/runtime) holds the torch modules that the layer
# definitions lower to: it reads only the layers' torch-free arithmetic beneath it, and the
# layer definitions import it inside lower() alone, so that nothing but lowering imports
# torch; the backends and `netdef` use its modules (the fused BatchNorm and Scale).
ALLOWED = {
    "base": {"base", "runtime"},
    "runtime": {"base", "runtime"},
    "frontends": {"base", "frontends"},
    "passes": {"base", "passes"},
    "pipeline": {"base", "frontends", "passes", "pipeline"},
    "backends": {"base", "runtime", "passes", "pipeline", "backends"},
    "netdef": {"base", "runtime", "frontends", "passes", "pipeline", "backends", "netdef"},
}


def part(module):
    """The part of the layout a module (dotted name) belongs to."""
    names = module.split(".")
    if names[0] == "netdef":
        return "netdef"
    if names[0] == "grammar":
        return "base"
    if len(names) > 1 and names[1] in ("frontends", "passes", "backends", "pipeline", "runtime"):
        return names[1]
    return "base"


def modules():
    """{dotted module name: path} of every module of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            names = list(rel.parts)
            if names[-1] == "__init__":
                names.pop()
            found[".".join(names)] = path
    return found


def imports(path, known):
    """[(imported module, line)] of one file: `from a.b import c` is a.b.c when that is a
    module, else a.b."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = "%s.%s" % (node.module, alias.name)
                out.append((sub if sub in known else node.module, node.lineno))
    return [(name, line) for name, line in out if name.split(".")[0] in PACKAGES]


def import_graph():
    known = modules()
    graph = nx.DiGraph()
    for module, path in known.items():
        graph.add_node(module)
        for target, line in imports(path, known):
            graph.add_edge(module, target, line=line, file=path.relative_to(ROOT))
    return graph


def against_direction(graph):
    return ["%s:%d: %s (%s) imports %s (%s)" % (data["file"], data["line"], src, part(src), dst, part(dst))
            for src, dst, data in graph.edges(data=True) if part(dst) not in ALLOWED[part(src)]]


def test_every_import_goes_the_way_of_the_pipeline():
    assert against_direction(import_graph()) == []


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    # A package's __init__ importing its own modules is how a package is put together.
    cycles = [c for c in nx.simple_cycles(graph)
              if not any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(c, c[1:] + c[:1]))]
    assert cycles == []


def test_the_check_sees_imports_against_the_direction(tmp_path):
    graph = nx.DiGraph()
    for src, dst in [("compiler.passes.fold", "compiler.backends.torch_fx"),
                     ("compiler.frontends.prototxt", "compiler.passes.phase"),
                     ("compiler.backends.dsl_writer", "compiler.frontends.dsl"),
                     ("compiler.layers.base", "netdef.api"),
                     ("compiler.backends.summary", "compiler.accounting")]:
        graph.add_edge(src, dst, line=1, file=src)
    found = against_direction(graph)
    assert len(found) == 4 and not any("summary" in f for f in found)
    # Lazy imports count: an import inside a function is an import.
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from compiler.backends import torch_fx\n")
    assert imports(module, {"compiler.backends.torch_fx"}) == [("compiler.backends.torch_fx", 2)]

"""A .net file as a module: its imports, blocks, constants and nets.

Loading a file parses it (syntax.py) and defines its names in order: `import "x.net"`
loads that file first (paths relative to the importing file; each file is loaded once
per build, and an import cycle is an error; files outside the project, the folder of the
file being built, are refused unless $NETDEF_IMPORT_PATH lists their folder) and brings in the names it defines; a block
is defined, not run; a constant is computed; a net is kept to be built on request
(nets.py). A name is defined once: a block may not take a layer's or a builtin's name.
"""
import os
from pathlib import Path

from lark import Tree

from compiler.errors import NetdefError
from compiler.files import regular_file
from compiler.frontends.dsl import syntax
from compiler.frontends.dsl.builtins import BUILTINS
from compiler.frontends.dsl.interpreter import Interpreter
from compiler.frontends.dsl.values import BlockDef

MAX_SOURCE_BYTES = 16 << 20
# Folders outside the project that imports may read, separated by os.pathsep.
IMPORT_PATH_ENV = "NETDEF_IMPORT_PATH"


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


def read_source(path):
    """A source file's text; refuses what cannot be one (too large, not UTF-8)."""
    path = Path(path)
    size = regular_file(path, "net file").st_size
    try:
        if size > MAX_SOURCE_BYTES:
            raise NetdefError(str(path), None, None, "file is over %d MB; not a netdef source" % (MAX_SOURCE_BYTES >> 20))
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise NetdefError(str(path), None, None, "cannot read: %s" % (e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise NetdefError(str(path), None, None, "not a text file (byte %d is not UTF-8)" % e.start) from None


def import_roots(project):
    """The folders imports may read: the project's (the folder of the file being built)
    and those listed in $NETDEF_IMPORT_PATH."""
    extra = [Path(p).resolve() for p in os.environ.get(IMPORT_PATH_ENV, "").split(os.pathsep) if p]
    return [Path(project).resolve()] + extra


def load_module(path, text=None, _loading=None, _cache=None, _roots=None):
    """Parse a .net file and define its blocks, constants and nets (imports first)."""
    path = Path(path)
    key = path.resolve()
    _loading = _loading if _loading is not None else []
    _cache = _cache if _cache is not None else {}
    _roots = _roots if _roots is not None else import_roots(path.parent)
    if key in _cache:
        return _cache[key]
    file = str(path)
    if text is None:
        text = read_source(path)
    tree = syntax.parse(text, file)
    module = Module(file, text)
    interp = Interpreter(module)
    _loading.append(key)
    for item in tree.children:
        if item.data == "import_stmt":
            tok = item.children[0]
            rel = interp.e_string(Tree("string", [tok]), {}, None)
            target = (path.parent / rel)
            if not any(target.resolve().is_relative_to(root) for root in _roots):
                # Refused before it is read: a net file must not make netdef read (and
                # quote in its errors) /etc/passwd or another user's files.
                raise interp.error(tok, "cannot import %s: it is outside the project (%s)" % (rel, _roots[0]),
                                   "imports read files under the folder of the net being built; "
                                   "allow other folders with $%s=DIR%sDIR..." % (IMPORT_PATH_ENV, os.pathsep))
            if target.resolve() in _loading:
                raise interp.error(tok, "import cycle: %s imports %s, which is being loaded" % (path.name, rel))
            if not target.is_file():
                raise interp.error(tok, "cannot import %s: no such file" % rel,
                                   "paths are relative to %s" % (path.parent or "."))
            sub = load_module(target, None, _loading, _cache, _roots)
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
                first = syntax.token_pos(module.nets[name].children[0])[0]
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
    """Bind a block or constant in the module; `origin` is where an imported one was defined."""
    if name in interp.ops or name in BUILTINS:
        raise interp.error(tok, "'%s' is a built-in %s; a block cannot take its name" % (
            name, "layer" if name in interp.ops else "function"), "choose another name, e.g. my_%s" % name)
    if name in module.names:
        f, line = module.defined_at[name]
        raise interp.error(tok, "duplicate name '%s'" % name, "already defined at %s:%s" % (f, line))
    module.names[name] = value
    module.defined_at[name] = origin or (module.file, tok.line)

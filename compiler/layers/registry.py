"""The layer registry: Caffe type name -> LayerDef instance.

Built-in layers are listed in compiler/layers/__init__.py. A user adds a layer type
(a custom layer, a Python layer, a fork's layer) with `register(MyLayerDef())`.
"""
import difflib

_REGISTRY = {}


def register(defn, replace=False):
    if not defn.type:
        raise ValueError("a LayerDef needs a `type`")
    if defn.type in _REGISTRY and not replace:
        raise ValueError("layer type %r is already registered (pass replace=True)" % defn.type)
    _REGISTRY[defn.type] = defn
    return defn


def unregister(type_name):
    _REGISTRY.pop(type_name, None)


def get(type_name):
    _load_builtins()
    return _REGISTRY.get(type_name)


def known_types():
    _load_builtins()
    return sorted(_REGISTRY)


def close_matches(type_name):
    return difflib.get_close_matches(type_name, known_types(), n=3, cutoff=0.6) or \
        [t for t in known_types() if t.lower() == type_name.lower()]


def _load_builtins():
    import compiler.layers  # noqa: F401  (registers the built-in layers on import)

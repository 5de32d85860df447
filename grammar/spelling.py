"""How the netdef language spells a layer type, for its reader (compiler/frontends/dsl) and
its writer (compiler/backends/dsl_writer.py) alike, so both directions map the same way.

Everything comes from the type's LayerDef: its short name (`dsl_name`: conv), the fields
given by position (`dsl_positional`: conv(64, 3)), keyword abbreviations
(`dsl_abbreviations`: k=3), the parameter field those fill (`param_field`), whether it
writes in place (`in_place`: `x -> relu` rewrites x) and whether it makes no top
(Silence). A type netdef has no definition for (Python, ROIPooling) is called by its type
name; its parameter field is then the one Caffe's schema names after it
(`roi_pooling_param`), or none, and other parameters are written as `xxx_param={...}`.
"""
import re

from compiler.layers import registry
from compiler.proto import caffe_pb2
from grammar import SUM_OP

_LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
# Word boundaries of a Caffe type name: HDF5Output -> hdf5_output, ROIPooling -> roi_pooling.
_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class Spelling:
    """A layer type as the language calls it; `name` overrides the name (SUM_OP)."""

    def __init__(self, type_name, name=None):
        defn = registry.get(type_name)
        self.type = type_name
        self.known = defn is not None and defn.dsl_name is not None
        self.name = name or (defn.dsl_name if self.known else type_name)
        self.positional = tuple(defn.dsl_positional) if defn is not None else ()
        self.short = dict(defn.dsl_abbreviations) if defn is not None else {}
        self.param_field = defn.param_field if defn is not None else _schema_param_field(type_name)
        self.in_place = defn is not None and defn.in_place
        # A type with no tops (Silence) makes none unless given top=.
        self.tops = 0 if defn is not None and defn.tops == (0, 0) else None


def _schema_param_field(type_name):
    name = _WORD.sub("_", type_name).lower() + "_param"
    return name if name in _LAYER_FIELDS else None


def sum_spelling():
    """`a + b` and add(a, b): an Eltwise with Caffe's default operation, SUM, so add takes
    no operation by position."""
    spelling = Spelling("Eltwise", SUM_OP)
    spelling.positional = ()
    return spelling


def short_names():
    """{short name: Spelling} of the types the registry now holds that have one, and add."""
    found = {}
    for type_name in registry.known_types():
        if registry.get(type_name).dsl_name is not None:
            spelling = Spelling(type_name)
            found[spelling.name] = spelling
    found[SUM_OP] = sum_spelling()
    return found

"""What a module built from a net knows about where it came from.

Every module the torch backend builds carries one ModuleRecord in `gm.meta["netdef"]`:
the IR net it computes, the Caffe name behind each submodule, the Caffe names of its
inputs and outputs, and what weight loading did. GraphModule copies `meta` in
`copy.deepcopy` and shares it in `copy.copy`, so ensembles, EMA copies, snapshots and
fine-tuning keep it, which attributes set on the module did not survive. torch.fx unpickles
a GraphModule with an empty `meta`; the backend's module class (torch_fx.NetModule) puts
the record back, so a user's torch.save / torch.load keeps it too.
"""
from dataclasses import dataclass, field

META_KEY = "netdef"


@dataclass
class ModuleRecord:
    net: object                                      # the IR Net the module computes
    layer_names: dict = field(default_factory=dict)  # submodule name -> Caffe layer name
    input_names: list = field(default_factory=list)  # Caffe blob names, forward()'s arguments
    output_names: list = field(default_factory=list)  # Caffe blob names of the returned dict
    weights: object = None                           # the weight-loading report, once loaded


def record_of(gm):
    """The ModuleRecord of a module netdef built; a clear error for any other module."""
    record = getattr(gm, "meta", {}).get(META_KEY)
    if record is None:
        raise TypeError("%s was not built by netdef (no gm.meta[%r])" % (type(gm).__name__, META_KEY))
    return record

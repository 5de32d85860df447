"""netdef: Caffe-compatible network definitions compiled to PyTorch.

    import netdef
    model = netdef.load("ResNet-50-deploy.prototxt", weights="ResNet-50-model.caffemodel")
    out = model(images)                  # {"prob": tensor}

The pipeline lives in the `compiler` package (frontends -> IR -> passes -> backends);
this package is the user's side of it: the API below and the `netdef` command (one file
per verb in netdef/commands/). Training, data and inference-time tools belong here too
(netdef/training, netdef/data, netdef/inference: README, "How it is built"), above the
compiler, which never imports this package.
"""
import importlib

from compiler.errors import NetdefError, NetdefErrors, NetdefWarning
from netdef.version import __version__
<<<<<<< HEAD

# Imported on first use (PEP 562): the layer definitions bring in torch, which the
# commands that compute nothing (`netdef --help`, `--version`) must not pay for.
_LAZY = {"LayerDef": "compiler.layers.base", "ShapeError": "compiler.layers.base",
         **{name: "netdef.api" for name in ("compile_net", "export", "load", "parse", "record",
                                            "register_layer", "save")}}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError("module 'netdef' has no attribute %r" % name)
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

=======
from netdef.api import compile_net, export, load, parse, record, register_layer, save
import netdef.data  # noqa: F401,E402  (registers the data layers' source-shapes hooks)
>>>>>>> main

__all__ = ["__version__", "NetdefError", "NetdefErrors", "NetdefWarning", "LayerDef", "ShapeError", "compile_net", "export",
           "load", "parse", "record", "register_layer", "save"]

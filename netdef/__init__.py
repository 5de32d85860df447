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
from compiler.errors import NetdefError, NetdefErrors, NetdefWarning
from compiler.layers.base import LayerDef, ShapeError
from netdef.version import __version__
from netdef.api import compile_net, export, load, parse, record, register_layer, save
import netdef.data  # noqa: F401,E402  (registers the data layers' source-shapes hooks)

__all__ = ["__version__", "NetdefError", "NetdefErrors", "NetdefWarning", "LayerDef", "ShapeError", "compile_net", "export",
           "load", "parse", "record", "register_layer", "save"]

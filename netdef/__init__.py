"""netdef: Caffe-compatible network definitions compiled to PyTorch.

    import netdef
    model = netdef.load("ResNet-50-deploy.prototxt", weights="ResNet-50-model.caffemodel")
    out = model(images)                  # {"prob": tensor}

The pipeline lives in the `compiler` package (frontends -> IR -> passes -> backends);
this package is the user's side of it: the API below and the `netdef` command (one file
per verb in netdef/commands/). Training, data and inference-time tools belong here too
(netdef/training, netdef/data, netdef/inference: README, "How it is built"), above the
compiler, which never imports this package.

The API functions live in netdef/api.py, which imports torch; they are looked up from
there on first use (PEP 562), so that `import netdef` and the commands that compute
nothing (summary, check, draw, convert, --help) start without torch.
"""
from compiler.errors import NetdefError, NetdefErrors, NetdefWarning
from compiler.layers.base import LayerDef, ShapeError
from netdef.version import __version__
import netdef.data  # noqa: F401,E402  (registers the data layers' source-shapes hooks)

_API = ("compile_net", "export", "load", "parse", "record", "register_layer", "save")

__all__ = ["__version__", "NetdefError", "NetdefErrors", "NetdefWarning", "LayerDef", "ShapeError", *_API]


def __getattr__(name):
    if name in _API:
        from netdef import api
        return getattr(api, name)
    raise AttributeError("module 'netdef' has no attribute %r" % name)


def __dir__():
    return sorted(set(globals()) | set(_API))

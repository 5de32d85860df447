"""The one pipeline: a net file -> a wired, shaped, checked IR Net, or every error found.

    read (a frontend by suffix: prototxt, .net, .netdef; Caffe's load-time upgrades)
    -> phase filter (NetState) -> wire -> shapes -> checks (passes/validate.py)

Every caller (netdef.parse, the CLI commands, the fast path, training, tests) goes through
here, so a net means the same thing wherever it is used. `build` returns the net or raises
every error; `read` then `check` leave a broken net as far as it goes, with its errors, for
the tools that show one (check, draw). The frontends only read and the passes only
transform: neither runs the other.
"""
from pathlib import Path

from compiler.accounting import NO_BUDGET
from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends import prototxt, saved
from compiler.passes.phase import filter_phase
from compiler.passes.shapes import infer_shapes
from compiler.passes.validate import empty_net_error, validate, warn_duplicate_names
from compiler.passes.wiring import wire
from compiler.state import NetState

__all__ = ["NO_BUDGET", "build", "build_net", "check", "read"]


def read(source, name=None):
    """A net file -> IR Net as its frontend reads it: every layer of every phase, upgraded,
    not yet filtered or wired. `name` chooses one net of a .net file that declares several."""
    path = Path(source)
    if name is not None and path.suffix != ".net":
        raise NetdefError(str(path), None, None, "a net name (%s) chooses a net of a .net file; "
                          "this file holds one net" % name)
    if path.suffix == saved.SUFFIX:
        text, _ = saved.read_saved(path, weights=False)
        return prototxt.load_net(path, text=text)
    if path.suffix == ".net":
        # Imported here: the netdef language's parser (lark) is not loaded for prototxt files.
        from compiler.frontends.dsl import load_dsl
        return load_dsl(path, net=name)
    return prototxt.load_net(path)


def check(net, state=NetState(), input_shapes=None, max_memory=None):
    """Run phase -> wire -> shapes -> checks over a net a frontend read, in place, and return
    every error found (a list of NetdefError). The net keeps what could be worked out: the
    layers of `state`, and the blobs and shapes of the layers that are valid.
    `input_shapes` ({blob name: shape}) override what the net declares; `max_memory` is the
    budget in bytes (default $NETDEF_MAX_MEMORY or 16 GiB)."""
    filter_phase(net, state)
    if not net.layers:
        return [empty_net_error(net)]
    errors = []
    try:
        wire(net)
    except NetdefErrors as e:
        errors.extend(e.errors)
    wiring_failed = {e.layer for e in errors}
    warn_duplicate_names(net)
    try:
        infer_shapes(net, input_shapes)
    except NetdefErrors as e:
        # A layer whose wiring failed has missing or dropped blobs: its shape complaint
        # would only restate the wiring error.
        errors.extend(x for x in e.errors if x.layer not in wiring_failed)
    errors += validate(net, {e.layer for e in errors}, max_memory)
    repeated = net.duplicate_names
    return [_with_call_sites(net, e, repeated) for e in errors]


def _with_call_sites(net, error, repeated):
    """An error at a layer that a block of the netdef language made, led by the block's call
    sites, as the errors raised while the file runs are: the block's line alone does not
    say which call (which loop iteration) made the layer. Errors name layers by name, so
    one of a name several layers have (`repeated`) is left as it is rather than given the
    first one's call."""
    if error.layer is None or error.layer in repeated:
        return error
    try:
        sites = net.layer(error.layer).called_from
    except KeyError:
        return error
    if sites:
        error.message = "%s: %s" % (", ".join(sites), error.message)
    return error


def build_net(net, state=NetState(), input_shapes=None, max_memory=None):
    """`check` a net a frontend read (or a pass rewrote); -> the wired, shaped net, or
    NetdefErrors with every problem."""
    errors = check(net, state, input_shapes, max_memory)
    if errors:
        raise NetdefErrors(errors)
    return net


def build(source, state=NetState(), input_shapes=None, max_memory=None, name=None):
    """A net file -> wired, shaped IR Net. A net whose blobs would not fit `max_memory`
    bytes (default $NETDEF_MAX_MEMORY or 16 GiB) is refused before anything is allocated.
    Raises NetdefErrors with every problem found."""
    return build_net(read(source, name), state, input_shapes, max_memory)

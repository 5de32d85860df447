"""The one pipeline: a net file -> a wired, shaped, checked IR Net, or every error found.

    read (frontend by suffix: prototxt, .net, .netdef) -> upgrade -> phase filter
    -> wire -> shapes -> checks

Every caller (netdef.parse, the CLI commands, the fast path, training, tests) goes through
`build`, so a net means the same thing wherever it is used; `read` stops after the phase
filter for the tools that show a broken net (check, draw).
"""
from pathlib import Path

from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends import prototxt, saved
from compiler.passes.phase import filter_phase
from compiler.passes.validate import validate
from compiler.state import NetState


def read(source, state=NetState(), name=None):
    """A net file -> IR Net of `state`, read and filtered but not yet wired.
    `name` chooses one net of a .net file that declares several."""
    path = Path(source)
    if name is not None and path.suffix != ".net":
        raise NetdefError(str(path), None, None, "a net name (%s) chooses a net of a .net file; "
                          "this file holds one net" % name)
    if path.suffix == saved.SUFFIX:
        text, _ = saved.read_saved(path)
        return prototxt.load_net(path, state, text=text)
    if path.suffix == ".net":
        from compiler.frontends.dsl import load_dsl
        return filter_phase(load_dsl(path, net=name), state)
    return prototxt.load_net(path, state)


def build(source, state=NetState(), input_shapes=None, max_memory=None, name=None):
    """A net file -> wired, shaped IR Net. A net whose blobs would not fit `max_memory`
    bytes (default $NETDEF_MAX_MEMORY or 16 GiB) is refused before anything is allocated.
    Raises NetdefErrors with every problem found."""
    net = read(source, state, name)
    errors = validate(net, input_shapes, max_memory)
    if errors:
        raise NetdefErrors(errors)
    return net

"""Shape assertions a source declares (the netdef language's `expect x: 256x28x28`),
checked against the shapes the shapes pass inferred.

An assertion means the blob as it is at that statement: the top of the layer that last
wrote it there. One whose layer the phase filter dropped is about another phase, and one
whose blob has no shape waits for a net that shapes (the shapes pass says why it does not).
"""
from compiler.errors import NetdefError


def check_expected_shapes(net):
    """-> a NetdefError, located at its statement, for each assertion that fails."""
    kept = {id(layer) for layer in net.layers}
    errors = []
    for e in net.expected_shapes:
        if id(e.layer) not in kept:
            continue
        # The layer's top of that name (wiring leaves out a top it refuses).
        sid = next((t for t in e.layer.tops if net.blobs[t].name == e.blob), None)
        shape = net.blobs[sid].shape if sid is not None else None
        if shape is None or list(shape[1:]) == list(e.dims):
            continue
        errors.append(NetdefError(e.file, e.line, None, "expected blob '%s' to be %s, but it is %s" % (
            e.blob, _dims(e.dims), _dims(shape[1:])),
            "shapes are written without the batch axis (full shape %s)" % _dims(shape), col=e.col))
    return errors


def _dims(dims):
    return "x".join(str(d) for d in dims) if dims else "a scalar per item"

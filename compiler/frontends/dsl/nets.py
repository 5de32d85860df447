"""Building one net of a .net file: its layers (every phase), its net-level options and
its shape assertions, as the rest of netdef sees a prototxt's.

The result holds every phase, unwired: the phase filter, wiring, shapes and the checks
(duplicate layer names, include with exclude rules, `expect` statements) are the
compiler's passes, run by compiler/pipeline.py as for any other source, so an error has
one wording whichever format the net was written in.
"""
from dataclasses import dataclass, field

from compiler.errors import NetdefError
from compiler.frontends.dsl.fields import set_field
from compiler.frontends.dsl.interpreter import Interpreter
from compiler.frontends.dsl.modules import load_module
from compiler.frontends.dsl.values import Complaint, suggest
from compiler.ir import Net
from compiler.proto import caffe_pb2

# Net options that the language says otherwise: inputs and layers are statements.
_NOT_OPTIONS = ("name", "layer", "layers", "input", "input_dim", "input_shape")


@dataclass
class NetSpec:
    """A built net: its layers (compiler.ir.Layer) in order, every phase, as a prototxt
    holds them; the `expect` statements; the net-level fields (force_backward, ...)."""
    name: str
    file: str
    options: object         # caffe_pb2.NetParameter with the net-level fields set
    layers: list = field(default_factory=list)
    expected_shapes: list = field(default_factory=list)    # compiler.ir.ShapeExpectation

    def to_proto(self):
        proto = caffe_pb2.NetParameter()
        proto.CopyFrom(self.options)
        proto.name = self.name
        for layer in self.layers:
            proto.layer.add().CopyFrom(layer.param)
        return proto

    def to_net(self):
        """The unwired IR Net of every phase, with the shape assertions to check."""
        net = Net(self.name, self.layers, file=self.file)
        net.expected_shapes = list(self.expected_shapes)
        return net


def build_net(module, net=None):
    """Run one net of a loaded module: -> NetSpec with every layer of every phase."""
    if not module.nets:
        raise NetdefError(module.file, None, None, "no net in this file",
                          "declare one: net \"MyNet\" { input data: 3x224x224 ... }")
    if net is None:
        if len(module.nets) > 1:
            raise NetdefError(module.file, None, None, "the file declares %d nets (%s); which one?" % (
                len(module.nets), ", ".join(module.nets)),
                "choose one with --net, e.g. netdef compile %s --net %s (in Python: name=...)"
                % (module.file, next(iter(module.nets))))
        net = next(iter(module.nets))
    if net not in module.nets:
        raise NetdefError(module.file, None, None, "no net named '%s' in this file (it has %s)" % (
            net, ", ".join(module.nets)), suggest(net, list(module.nets)))
    node = module.nets[net]
    interp = Interpreter(module)
    interp.net = NetSpec(net, module.file, caffe_pb2.NetParameter())
    children = node.children[1:]
    if len(children) == 2:      # net "X" (force_backward=true) { ... }
        pos, kw = interp.eval_args(children[0], {})
        if pos:
            raise interp.error(children[0], "a net's options are given by name: net \"X\" (force_backward=true)")
        for key, (v, key_node) in kw.items():
            if key in _NOT_OPTIONS:
                raise interp.error(key_node, "%s is not a net option here" % key,
                                   "inputs are `input data: 3x224x224` statements; layers go in the body")
            try:
                set_field(interp.net.options, key, v, key_node)
            except Complaint as e:
                raise interp.error(e.node, e.message, e.hint) from None
    interp.run_body(children[-1], {})
    return interp.net


def load_spec(path, net=None, text=None):
    """A .net file (or its text) -> the NetSpec of one of its nets."""
    try:
        return build_net(load_module(path, text), net)
    except RecursionError:
        # Only absurd sources get here: expressions or imports nested hundreds deep.
        raise NetdefError(str(path), None, None, "the source nests too deeply to build",
                          "split deeply nested expressions into statements") from None


def load_dsl(path, net=None, text=None):
    """A .net file -> the unwired IR Net of one of its nets, every phase."""
    return load_spec(path, net, text).to_net()


def load_proto(path, net=None, text=None):
    """A .net file -> the NetParameter of one net, every phase (what `netdef convert`
    writes)."""
    return load_spec(path, net, text).to_proto()

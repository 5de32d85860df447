"""The IR: a network as a networkx graph of layers, with blobs on the edges.

A Net starts as an ordered list of Layers (what a frontend read). The wiring pass
(passes/wiring.py) turns Caffe's blob names into SSA ids, so that a blob written in place
by several layers (conv1 -> relu1 -> bn1, all "conv1") becomes a chain of distinct values,
recorded in each layer's `bottoms` and `tops` and each blob's `producer`; `graph` gives the
same as a networkx graph: one node per layer, one edge per (producer, consumer, blob).

Users still speak Caffe: `net.latest["conv1"]` is the SSA id of conv1's value after the
last layer that writes it, which is what Caffe's net.blobs["conv1"] holds.

Weights travel as LayerBlobs, one per layer of a weights file, matched to the net's
layers by name (compiler/accounting.py says which blob fills which).
"""
from dataclasses import dataclass

from compiler.layers import registry
from compiler.proto import caffe_pb2
from compiler.state import NetState


# The IR's records have __slots__: a net of a million layers holds a million of each, and a
# per-instance __dict__ would be a third of their memory.
class Layer:
    """One layer of a net, in Caffe order. Its parameters are kept as their protobuf wire
    bytes and `param` decodes them on each use (a quarter of a microsecond): a decoded
    LayerParameter costs 700 to 1,000 bytes of upb memory whatever it holds (a slot for
    each of its 65 fields), its bytes a few dozen, and a net of a million layers would
    otherwise hold a million. So `layer.param` is a copy: to change a layer, assign a
    changed message back (`p = layer.param; p.name = "x"; layer.param = p`)."""
    __slots__ = ("name", "type", "wire", "line", "file", "bottoms", "tops", "key", "called_from")

    def __init__(self, name, type, param, line=None, file=None):
        self.name = name
        self.type = type
        # A LayerParameter, or its wire bytes as a frontend read them.
        self.wire = param if isinstance(param, bytes) else param.SerializeToString()
        self.line = line
        self.file = file
        self.bottoms = ()           # SSA blob ids read, after wiring
        self.tops = ()              # SSA blob ids written, after wiring
        # Unique in its net (Net.layers sets it): the name, or for a later layer of a name
        # that Caffe allows twice (BVLC's mnist_autoencoder has two "loss") "name#2",
        # "name#3"... The graph's nodes and Blob.producer use it.
        self.key = None
        # The netdef language's call sites of the blocks that made the layer, innermost
        # first ("in block 'unit' called from line 12 (i = 2)"); None outside blocks.
        self.called_from = None

    @property
    def param(self):
        """The caffe_pb2.LayerParameter as written (V1 upgraded): a new message each time."""
        return caffe_pb2.LayerParameter.FromString(self.wire)

    @param.setter
    def param(self, message):
        self.wire = message.SerializeToString()

    @property
    def defn(self):
        return registry.get(self.type)

    def __repr__(self):
        return "Layer(%s: %s)" % (self.name, self.type)


@dataclass(eq=False, slots=True)
class Blob:
    id: str            # SSA id, unique in the net
    name: str          # Caffe blob name
    producer: str      # key (Layer.key: its name, unless an earlier layer has it) of its writer
    shape: tuple = None


@dataclass
class LayerBlobs:
    """One layer's blobs as a weights file (a .caffemodel, a saved .netdef) holds them."""
    name: str
    type: str
    blobs: list          # numpy arrays, in Caffe's blob order
    legacy: list         # per blob: True if its shape came from num/channels/height/width


@dataclass(eq=False)
class ShapeExpectation:
    """A shape the source asserts for a blob, batch axis left out (the netdef language's
    `expect x: 256x28x28`), checked after shape inference (passes/expectations.py)."""
    blob: str          # Caffe name
    dims: tuple
    layer: Layer       # the layer whose top is meant: the blob's last writer at the assertion
    file: str = None
    line: int = None
    col: int = None


class Net:
    def __init__(self, name, layers, file=None, state=NetState()):
        self.name = name
        self.file = file
        self.state = state               # the NetState its layers were filtered by
        self.layers = layers             # Caffe order
        self.blobs = {}                  # SSA id -> Blob
        self.latest = {}                 # Caffe blob name -> SSA id of its final value
        self.blob_order = []             # Caffe blob names in Caffe's net.blobs order
        self.excluded_layers = []        # dropped by the phase filter (for wiring's hints)
        self.expected_shapes = []        # ShapeExpectations the source declares

    @property
    def phase(self):
        return self.state.phase

    @property
    def graph(self):
        """The wired net as a networkx MultiDiGraph, made from the wiring's records when
        asked (a new graph each time): one node per layer (its key, with the Layer as
        `layer`), one edge per blob a layer reads from the layer that produced it (keyed
        and labelled `blob` by its SSA id). networkx is imported here, not with the IR: it
        takes a tenth of a second, which reading, checking and drawing a net do not need."""
        import networkx as nx
        graph = nx.MultiDiGraph()
        for layer in self.layers:
            graph.add_node(layer.key, layer=layer)
            for sid in layer.bottoms:
                producer = self.blobs[sid].producer if sid in self.blobs else None
                if producer is not None:
                    graph.add_edge(producer, layer.key, key=sid, blob=sid)
        return graph

    @property
    def layers(self):
        return self._layers

    @layers.setter
    def layers(self, layers):
        # Passes replace the list (the phase filter, folding); they never edit it in place,
        # so keys and the index are made only when a new list is set.
        self._layers = list(layers)
        names = {layer.name for layer in self._layers}
        self._by_key = {}
        for layer in self._layers:
            key, k = layer.name, 1
            while key in self._by_key or (k > 1 and key in names):
                k += 1
                key = "%s#%d" % (layer.name, k)
            layer.key = key
            self._by_key[key] = layer

    def layer(self, key):
        """The layer of that key: for a name, the first layer of that name, as Caffe's
        layer_by_name. O(1): the backend asks for a producer per bottom, so a scan would
        make building quadratic."""
        return self._by_key[key]

    @property
    def duplicate_names(self):
        """{name: [its layers]} for the names more than one layer has."""
        layers = {}
        for layer in self._layers:
            if layer.key != layer.name:
                layers.setdefault(layer.name, [self._by_key[layer.name]]).append(layer)
        return layers

    @property
    def inputs(self):
        """SSA ids of the blobs that input layers (Input, the data layers) provide, in
        declaration order: the module's arguments."""
        return [t for layer in self.layers if layer.defn is not None and layer.defn.is_input
                for t in layer.tops]

    @property
    def outputs(self):
        """Caffe names of blobs that no layer reads (Caffe's net outputs), in net order."""
        read = {b for layer in self.layers for b in layer.bottoms}
        out = []
        for name in self.blob_order:
            final = self.latest[name]
            if final not in read and name not in out:
                out.append(name)
        return out

    def shape(self, blob_name):
        return self.blobs[self.latest[blob_name]].shape

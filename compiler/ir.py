"""The IR: a network as a networkx graph of layers, with blobs on the edges.

A Net starts as an ordered list of Layers (what a frontend read). The wiring pass
(passes/wiring.py) turns Caffe's blob names into SSA ids, so that a blob written in place
by several layers (conv1 -> relu1 -> bn1, all "conv1") becomes a chain of distinct values,
and fills `graph`: one node per layer, one edge per (producer, consumer, blob).

Users still speak Caffe: `net.latest["conv1"]` is the SSA id of conv1's value after the
last layer that writes it, which is what Caffe's net.blobs["conv1"] holds.
"""
from dataclasses import dataclass, field

import networkx as nx

from compiler.state import NetState


@dataclass(eq=False)
class Layer:
    name: str
    type: str
    param: object                     # caffe_pb2.LayerParameter, as written (V1 upgraded)
    line: int = None
    file: str = None
    bottoms: list = field(default_factory=list)   # SSA blob ids read, after wiring
    tops: list = field(default_factory=list)      # SSA blob ids written, after wiring

    @property
    def defn(self):
        from compiler.layers import registry
        return registry.get(self.type)

    def __repr__(self):
        return "Layer(%s: %s)" % (self.name, self.type)


@dataclass(eq=False)
class Blob:
    id: str            # SSA id, unique in the net
    name: str          # Caffe blob name
    producer: str      # name of the layer that writes this value
    shape: tuple = None


class Net:
    def __init__(self, name, layers, file=None, state=NetState()):
        self.name = name
        self.file = file
        self.state = state               # the NetState its layers were filtered by
        self.layers = list(layers)       # Caffe order
        self.blobs = {}                  # SSA id -> Blob
        self.latest = {}                 # Caffe blob name -> SSA id of its final value
        self.blob_order = []             # Caffe blob names in Caffe's net.blobs order
        self.graph = nx.MultiDiGraph()
        self.excluded_layers = []        # dropped by the phase filter (for wiring's hints)

    @property
    def phase(self):
        return self.state.phase

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

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

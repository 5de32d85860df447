"""Input and the data layers.

Input gives each top the shape its input_param declares (one shape for all tops, or one
per top), MemoryData the batch_size x channels x height x width its memory_data_param
declares (and a batch_size label). Caffe's data layers (Data, ImageData, HDF5Data) take
their tops' shapes from their source: the data package reads the first record or image
through the source-shapes hook (registry.register_source_shapes); shapes the user gives
(--input-shape) take precedence, so a net whose source is elsewhere still compiles. A data
layer without a reader (DummyData, AnnotatedData) needs the given shapes. WindowData and
Python layers cannot run in netdef and are refused.
"""
from compiler.layers.base import LayerDef, ShapeError


class Input(LayerDef):
    type = "Input"
    param_field = "input_param"
    draw_color = "#c8e6c9"
    bottoms = (0, 0)
    tops = (1, None)
    is_input = True

    def shape(self, layer, shapes):
        declared = [tuple(s.dim) for s in layer.param.input_param.shape]
        n = len(layer.param.top)
        if len(declared) == 1:
            declared = declared * n
        if len(declared) != n:
            raise ShapeError("%d tops but %d input shapes" % (n, len(declared)),
                             "give one shape for all tops or one per top")
        return declared

    def declare_shapes(self, param, shapes):
        param.input_param.Clear()
        for shape in shapes:
            param.input_param.shape.add().dim.extend(shape)

    def lower(self, layer, shapes):
        raise AssertionError("Input layers become graph placeholders")


class DataLayer(LayerDef):
    """A layer that reads a dataset: its tops are the network's inputs."""
    bottoms = (0, 0)
    tops = (1, None)
    is_input = True

    def shape(self, layer, shapes):
        raise ShapeError("%s layer: netdef has no reader for its source, so its top shapes are "
                         "unknown" % self.type,
                         "give the shapes of its tops, e.g. --input-shape %s=N,C,H,W, or compile the "
                         "deploy prototxt" % (layer.param.top[0] if layer.param.top else "data"))


class MemoryData(DataLayer):
    """Caffe's MemoryDataLayer: arrays handed over by the program (netdef: --input .npz or
    the module's arguments), of the declared batch_size x channels x height x width."""
    type = "MemoryData"
    param_field = "memory_data_param"

    def shape(self, layer, shapes):
        p = layer.param.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)][:len(layer.param.top)]


class Refused(LayerDef):
    """A type netdef knows but cannot run; `reason` says why, `hint` what to do instead."""
    bottoms = (0, None)
    tops = (0, None)
    reason = hint = None

    def shape(self, layer, shapes):
        raise ShapeError(self.reason, self.hint)

    def lower(self, layer, shapes):
        raise NotImplementedError("%s (hint: %s)" % (self.reason, self.hint))


class WindowData(Refused):
    type = "WindowData"
    param_field = "window_data_param"
    reason = ("WindowData is not supported: it samples R-CNN foreground/background windows from "
              "a window file with Caffe's own random rules, which netdef does not implement")
    hint = "crop the windows into images and read them with ImageData, or an LMDB with Data"


class Python(Refused):
    type = "Python"
    param_field = "python_param"
    reason = ("Python layers are not supported: they run a module in Caffe's embedded Python "
              "interpreter (python_param.module/layer), which netdef cannot load as a layer")
    hint = "write the layer as a netdef LayerDef and register it (README, \"Custom layers\")"


def _data_layer(type_name, field):
    return type("%sLayer" % type_name, (DataLayer,), {"type": type_name, "param_field": field})()


LAYERS = [Input(), MemoryData(), WindowData(), Python()] + [_data_layer(t, f) for t, f in [
    ("Data", "data_param"), ("ImageData", "image_data_param"), ("HDF5Data", "hdf5_data_param"),
    ("DummyData", "dummy_data_param"), ("AnnotatedData", None)]]

"""Input and the data layers.

Input gives each top the shape its input_param declares (one shape for all tops, or one
per top). Caffe's data layers (Data, ImageData, ...) read a dataset whose shape netdef does
not know at compile time: they compile when the user gives their tops' shapes
(--input-shape), and are otherwise refused with a hint.
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
        raise ShapeError("%s layer: its output shape comes from the dataset, which netdef does "
                         "not read when compiling" % self.type,
                         "give the shapes of its tops, e.g. --input-shape %s=N,C,H,W, or "
                         "compile the deploy prototxt" % (layer.param.top[0] if layer.param.top else "data"))


def _data_layer(type_name, field):
    return type("%sLayer" % type_name, (DataLayer,), {"type": type_name, "param_field": field})()


LAYERS = [Input()] + [_data_layer(t, f) for t, f in [
    ("Data", "data_param"), ("ImageData", "image_data_param"), ("HDF5Data", "hdf5_data_param"),
    ("WindowData", "window_data_param"), ("MemoryData", "memory_data_param"),
    ("DummyData", "dummy_data_param"), ("AnnotatedData", None)]]

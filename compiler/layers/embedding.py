"""Layers that read rows by index, and the learned blob as a top: Embed (rows of its
table), BatchReindex (items of its batch) and Parameter (the blob itself).

Indices come as float values, as every Caffe blob holds floats, and are truncated toward
zero (static_cast<int>). An index outside the rows stops the run: Caffe CHECKs
BatchReindex's, and DCHECKs that Embed's are integers below input_dim (a release build
reads outside its table instead); netdef's modules refuse such a value with an error
naming the layer and the value (compiler/runtime/embedding.py: checked_indices).
"""
from compiler.layers.base import MAX_AXES, LayerDef, ShapeError, prod
from compiler.layers.fillers import fill


class Embed(LayerDef):
    """A lookup table: every value of the bottom, an index i, becomes row i of the weight
    blob, (input_dim, num_output) (InnerProduct's weight transposed, for locality of the
    rows), plus the bias (num_output) when bias_term (default true). The top is the
    bottom's shape with num_output appended. The indices get no gradient (Caffe CHECKs
    that none is asked for); the weight's gradient adds up the top's gradient over every
    position holding the same index, as Caffe's axpy per position does."""
    type = "Embed"
    fresh_output = True
    param_field = "embed_param"
    blob_names = ("weight", "bias")
    dsl_name = "embed"
    dsl_positional = ("num_output", "input_dim")
    dsl_abbreviations = {"bias": "bias_term"}
    draw_color = "#d9a3f5"

    def draw_label(self, layer):
        q = layer.param.embed_param
        return "%dx%d table" % (q.input_dim, q.num_output)

    def _params(self, layer, shape):
        p = layer.param.embed_param
        if p.num_output <= 0:
            raise ShapeError("num_output must be set and positive", "add num_output: N, the size of a row")
        if p.input_dim <= 0:
            raise ShapeError("input_dim must be set and positive",
                             "add input_dim: N, one more than the largest index")
        if len(shape) + 1 > MAX_AXES:
            raise ShapeError("the top would have %d axes, more than Caffe's %d" % (len(shape) + 1, MAX_AXES))
        return p

    def shape(self, layer, shapes):
        return [tuple(shapes[0]) + (self._params(layer, shapes[0]).num_output,)]

    def blob_shapes(self, layer, shapes):
        p = self._params(layer, shapes[0])
        weight = (p.input_dim, p.num_output)
        return [weight, (p.num_output,)] if p.bias_term else [weight]

    def backward_values(self, layer, shapes, out_shapes):
        """The int64 indices (two float32s' worth each) the weight's gradient reads."""
        return 2 * prod(shapes[0])

    def lower(self, layer, shapes):
        from compiler.runtime.embedding import CaffeEmbed
        p = self._params(layer, shapes[0])
        module = CaffeEmbed(p.input_dim, p.num_output, p.bias_term, layer.name)
        if p.HasField("weight_filler"):
            fill(module.weight.data, p.weight_filler)
        if p.bias_term and p.HasField("bias_filler"):
            fill(module.bias.data, p.bias_filler)
        return module


class BatchReindex(LayerDef):
    """top[i] = data[indices[i]]: the items of the first bottom (axis 0) at the indices
    of the second, a 1-axis blob, in their order, repeats allowed; the top has as many
    items as there are indices. The gradient of an item adds up over the places it was
    copied to; the indices get none (Caffe CHECKs that none is asked for)."""
    type = "BatchReindex"
    bottoms = (2, 2)

    def shape(self, layer, shapes):
        data, indices = shapes
        if len(indices) != 1:
            raise ShapeError("the indices (second bottom) must be a 1-axis blob, got %s" % list(indices),
                             "Flatten or Reshape them to one axis")
        if not data:
            raise ShapeError("the data (first bottom) has no axis 0 to reindex")
        return [(indices[0],) + tuple(data[1:])]

    def backward_values(self, layer, shapes, out_shapes):
        """The int64 indices (two float32s' worth each) the data's gradient reads."""
        return 2 * shapes[1][0]

    def lower(self, layer, shapes):
        from compiler.runtime.embedding import CaffeBatchReindex
        self.shape(layer, shapes)
        return CaffeBatchReindex(layer.name)


class Parameter(LayerDef):
    """A learnable blob of parameter_param.shape given as the top (no bottoms): Caffe's
    top shares the blob's data and gradient, so whatever reads the top trains the blob.
    No filler: the blob starts at zero, as Caffe allocates it, until weights set it."""
    type = "Parameter"
    param_field = "parameter_param"
    blob_names = ("value",)
    bottoms = (0, 0)

    def draw_label(self, layer):
        return "x".join(str(d) for d in layer.param.parameter_param.shape.dim) or "scalar"

    def shape(self, layer, shapes):
        dims = tuple(layer.param.parameter_param.shape.dim)
        if len(dims) > MAX_AXES:
            raise ShapeError("shape has %d axes, more than Caffe's %d" % (len(dims), MAX_AXES))
        if any(d < 0 for d in dims):
            raise ShapeError("shape %s has a negative dimension" % list(dims))
        return [dims]

    def blob_shapes(self, layer, shapes):
        return self.shape(layer, shapes)

    def lower(self, layer, shapes):
        from compiler.runtime.embedding import CaffeParameter
        return CaffeParameter(self.shape(layer, shapes)[0])


LAYERS = [Embed(), BatchReindex(), Parameter()]

"""InnerProduct: a fully connected layer over the axes from `axis` on.

The input is flattened from `axis` (default 1) into K features; the output keeps the
axes before `axis` and adds num_output. The weight blob is (num_output, K), or (K,
num_output) with `transpose: true`.

K is fixed by the weights, so an input of another size than the net was built for (a
256x256 image into a net for 224x224) cannot work; the module says so, naming the layer
and both counts, instead of failing inside a matmul.
"""
from compiler.layers.base import LayerDef, ShapeError, canonical_axis, prod
from compiler.layers.fillers import fill


class InnerProduct(LayerDef):
    type = "InnerProduct"
    fresh_output = True
    param_field = "inner_product_param"
    blob_names = ("weight", "bias")
    dsl_name = "fc"
    dsl_positional = ("num_output",)
    dsl_abbreviations = {"bias": "bias_term"}
    conv_fc_macs = True
    draw_color = "#d9a3f5"

    def draw_label(self, layer):
        q = layer.param.inner_product_param
        return "%s out" % (q.num_output if q.HasField("num_output") else "?")

    def _dims(self, layer, shape):
        p = layer.param.inner_product_param
        if not p.HasField("num_output") or p.num_output <= 0:
            raise ShapeError("num_output must be set and positive")
        axis = canonical_axis(p.axis, len(shape))
        return p, axis, prod(shape[axis:])

    def shape(self, layer, shapes):
        p, axis, _ = self._dims(layer, shapes[0])
        return [tuple(shapes[0][:axis]) + (p.num_output,)]

    def blob_shapes(self, layer, shapes):
        p, _, k = self._dims(layer, shapes[0])
        w = (k, p.num_output) if p.transpose else (p.num_output, k)
        return [w, (p.num_output,)] if p.bias_term else [w]

    def macs(self, layer, shapes, out_shapes):
        p, axis, k = self._dims(layer, shapes[0])
        return prod(shapes[0][1:axis]) * k * p.num_output

    def lower(self, layer, shapes):
        from compiler.runtime.inner_product import CaffeInnerProduct
        p, axis, k = self._dims(layer, shapes[0])
        module = CaffeInnerProduct(k, p.num_output, axis, p.bias_term, p.transpose, layer.name)
        if p.HasField("weight_filler"):
            fill(module.weight.data, p.weight_filler)
        if p.bias_term and p.HasField("bias_filler"):
            fill(module.bias.data, p.bias_filler)
        return module


LAYERS = [InnerProduct()]

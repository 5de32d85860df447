"""Pooling, MAX and AVE, with Caffe's exact output sizes and divisors.

Caffe rounds the output size up (round_mode CEIL, the default; `ceil_mode: false` from
forks and round_mode FLOOR round down), then, when there is padding, drops a last window
that would start inside the padding: if (out-1)*stride >= in + pad, out -= 1.
AVE divides by the window counted up to in + pad (padding included), not by the real
pixels. PyTorch's ceil_mode pooling follows the same rules while pad <= kernel/2 and no
window lies wholly outside the input; elsewhere (pad > kernel/2, stride > kernel) the
module pads explicitly and computes Caffe's divisors itself.
"""
from compiler.layers.arithmetic import padding_after, pooled_size, torch_pools_as_caffe
from compiler.layers.base import LayerDef, ShapeError, geometry_text, prod, spatial_geometry
from compiler.proto import caffe_pb2

MAX, AVE, STOCHASTIC = 0, 1, 2


class Pooling(LayerDef):
    type = "Pooling"
    param_field = "pooling_param"
    dsl_name = "pool"
    dsl_positional = ("pool", "kernel_size", "stride", "pad")
    dsl_abbreviations = {"k": "kernel_size", "s": "stride", "p": "pad", "global": "global_pooling"}
    draw_color = "#ffc266"

    def draw_label(self, layer):
        q = layer.param.pooling_param
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(q.pool)
        return method + (" global" if q.global_pooling else " " + geometry_text(q))

    def geometry(self, layer, shape):
        p = layer.param.pooling_param
        if len(shape) != 4:
            raise ShapeError("Pooling needs an (N, C, H, W) input, got %s" % list(shape))
        kernel, pad, stride, _ = spatial_geometry(p, 2, has_dilation=False)
        if p.global_pooling:
            if p.kernel_size or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise ShapeError("global_pooling takes its kernel from the input; remove kernel_size")
            if any(pad) or any(s != 1 for s in stride):
                raise ShapeError("global_pooling needs pad 0 and stride 1")
            kernel = list(shape[2:])
        elif any(k is None for k in kernel):
            raise ShapeError("kernel size is not set", "add kernel_size, or global_pooling: true")
        if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride):
            raise ShapeError("kernel and stride must be positive (kernel %s, stride %s)" % (kernel, stride))
        for k, pd in zip(kernel, pad):
            if pd >= k:
                raise ShapeError("pad %d is not smaller than kernel %d (Caffe requires pad < kernel)" % (pd, k))
        if p.pool == STOCHASTIC:
            raise ShapeError("STOCHASTIC pooling is not supported", "use MAX or AVE")
        ceil = p.round_mode == p.CEIL and p.ceil_mode
        return p.pool, kernel, pad, stride, ceil

    def shape(self, layer, shapes):
        shape = shapes[0]
        _, kernel, pad, stride, ceil = self.geometry(layer, shape)
        out = []
        for size, k, pd, s in zip(shape[2:], kernel, pad, stride):
            if size + 2 * pd < k:
                raise ShapeError("kernel %d is larger than the padded input %d (size %d + 2*pad %d)"
                                 % (k, size + 2 * pd, size, pd),
                                 "use a smaller kernel or more padding, or check the input size")
            out.append(pooled_size(size, k, pd, s, ceil))
        return [tuple(shape[:2]) + tuple(out)]

    def workspace_values(self, layer, shapes):
        """Where PyTorch's pooling cannot follow Caffe (pad > kernel/2, a window wholly in
        the padding) the module pads the input explicitly: a kernel of thousands with the
        padding it needs makes that copy huge while the top stays small."""
        if layer.param.pooling_param.global_pooling:
            return 0
        n, c, h, w = shapes[0]
        _, kernel, pad, stride, ceil = self.geometry(layer, shapes[0])
        out = self.shape(layer, shapes)[0][2:]
        if torch_pools_as_caffe((h, w), out, kernel, pad, stride, ceil):
            return 0
        after = padding_after((h, w), out, kernel, pad, stride)
        return n * c * (h + pad[0] + after[0]) * (w + pad[1] + after[1])

    def backward_values(self, layer, shapes, out_shapes):
        """Max pooling keeps the argmax of every output as int64 (two float32s' worth),
        as Caffe keeps its max_idx_ blob; average pooling keeps nothing."""
        return 2 * prod(out_shapes[0]) if layer.param.pooling_param.pool == MAX else 0

    def lower(self, layer, shapes):
        from compiler.runtime.pooling import CaffePool2d
        method, kernel, pad, stride, ceil = self.geometry(layer, shapes[0])
        return CaffePool2d(method == MAX, kernel, pad, stride, ceil,
                           layer.param.pooling_param.global_pooling)


LAYERS = [Pooling()]

"""Pooling, MAX and AVE, with Caffe's exact output sizes and divisors.

Caffe rounds the output size up (round_mode CEIL, the default; `ceil_mode: false` from
forks and round_mode FLOOR round down), then, when there is padding, drops a last window
that would start inside the padding: if (out-1)*stride >= in + pad, out -= 1.
AVE divides by the window counted up to in + pad (padding included), not by the real
pixels. PyTorch's ceil_mode pooling follows the same rules while pad <= kernel/2 and no
window lies wholly outside the input; elsewhere (pad > kernel/2, stride > kernel) the
module pads explicitly and computes Caffe's divisors itself.
"""
from compiler.layers.arithmetic import padding_after, pooled_sizes, spp_level, torch_pools_as_caffe
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
        for size, k, pd in zip(shape[2:], kernel, pad):
            if size + 2 * pd < k:
                raise ShapeError("kernel %d is larger than the padded input %d (size %d + 2*pad %d)"
                                 % (k, size + 2 * pd, size, pd),
                                 "use a smaller kernel or more padding, or check the input size")
        return [tuple(shape[:2]) + pooled_sizes(shape[2:], kernel, pad, stride, ceil)]

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


class _PoolingLayer:
    """A Pooling layer SPP builds for one pyramid level: what Pooling's methods read."""

    def __init__(self, param):
        self.param = param


class SPP(LayerDef):
    """Spatial pyramid pooling, as Caffe builds it: for each level i below pyramid_height,
    a Pooling layer (MAX or AVE, rounding up) with the kernel, stride and pad that
    arithmetic.spp_level computes from the input's height and width (2^i bins per axis),
    its output flattened to (N, C * bins^2) and the levels concatenated in order on axis 1.
    With pyramid_height 1 the top is the one Pooling's output itself, (N, C, 1, 1),
    unflattened, as Caffe's SPPLayer then skips its Split, Flatten and Concat. Every level
    is Pooling's own shape rule, checks and module (caffe_pool2d) with that geometry,
    recomputed from the input the module gets, as Caffe's Reshape rebuilds the levels
    whenever the input changes size. The input needs at least about 2^(height-1)
    positions per axis: below that a level's pad reaches its kernel, which Pooling
    refuses."""
    type = "SPP"
    param_field = "spp_param"
    dsl_name = "spp"
    dsl_positional = ("pyramid_height", "pool")
    draw_color = Pooling.draw_color

    def draw_label(self, layer):
        q = layer.param.spp_param
        return "%s pyramid %d" % (caffe_pb2.SPPParameter.PoolMethod.Name(q.pool), q.pyramid_height)

    def levels(self, layer, shape):
        """The Pooling layer of each pyramid level for an input of `shape`, each with its
        top's shape, checked by Pooling's rules."""
        p = layer.param.spp_param
        if p.pyramid_height < 1:
            raise ShapeError("pyramid_height must be set and at least 1", "add pyramid_height: N (N >= 1)")
        if len(shape) != 4:
            raise ShapeError("SPP needs an (N, C, H, W) input, got %s" % list(shape))
        levels = []
        for i in range(p.pyramid_height):
            kernel, pad = spp_level(shape[2], shape[3], i)
            pool = caffe_pb2.LayerParameter(name="%s level %d" % (layer.param.name, i), type="Pooling")
            q = pool.pooling_param
            q.pool = p.pool          # SPP's PoolMethod numbers Pooling's: MAX 0, AVE 1, STOCHASTIC 2
            q.kernel_h, q.kernel_w = kernel
            q.stride_h, q.stride_w = kernel
            q.pad_h, q.pad_w = pad
            level = _PoolingLayer(pool)
            try:
                levels.append((level, POOLING.shape(level, [shape])[0]))
            except ShapeError as e:
                hint = e.hint
                if any(pd >= k for pd, k in zip(pad, kernel)):
                    hint = "a %dx%d input allows pyramid_height %d at most; use that, or a larger input" % (
                        shape[2], shape[3], i)
                raise ShapeError("pyramid level %d (%d bins per axis: kernel %s, stride %s, pad %s): %s"
                                 % (i, 2 ** i, kernel, kernel, pad, e.message), hint) from None
        return levels

    def shape(self, layer, shapes):
        levels = self.levels(layer, shapes[0])
        if len(levels) == 1:
            return [levels[0][1]]
        return [(shapes[0][0], sum(prod(out[1:]) for _, out in levels))]

    def workspace_values(self, layer, shapes):
        """Each level's pooled values until they are concatenated, and the largest padded
        copy a level's pooling makes (Pooling.workspace_values)."""
        levels = self.levels(layer, shapes[0])
        pooled = sum(prod(out) for _, out in levels) if len(levels) > 1 else 0
        return pooled + max(POOLING.workspace_values(level, shapes) for level, _ in levels)

    def backward_values(self, layer, shapes, out_shapes):
        return sum(POOLING.backward_values(level, shapes, [out]) for level, out in self.levels(layer, shapes[0]))

    def lower(self, layer, shapes):
        from compiler.runtime.pooling import CaffeSPP
        self.levels(layer, shapes[0])
        p = layer.param.spp_param
        return CaffeSPP(p.pyramid_height, p.pool == MAX, layer.name)


POOLING = Pooling()
LAYERS = [POOLING, SPP()]

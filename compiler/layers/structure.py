"""Layers that combine, split or rearrange blobs without learning anything: Eltwise,
Concat, Slice, Split, Crop, Flatten, Reshape, Tile, Im2col, Silence.

Caffe re-applies each shape rule whenever its inputs change size (Net::Reshape), so the
modules here compute their sizes from the tensors they get, never from the shapes the net
declared: a compiled net runs with any batch size the rules allow.
"""
from compiler.layers.arithmetic import reshape_target, slice_sizes
from compiler.layers.base import LayerDef, ShapeError, canonical_axis, geometry_text, prod, spatial_geometry
from compiler.proto import caffe_pb2

PROD, SUM = caffe_pb2.EltwiseParameter.PROD, caffe_pb2.EltwiseParameter.SUM


def not_in_place(layer):
    """Caffe's Split, Flatten and Reshape refuse a top that is their bottom."""
    for top in layer.param.top:
        if top in layer.param.bottom:
            raise ShapeError("%s does not allow in-place computation (top '%s' is its bottom)"
                             % (layer.type, top), "give the top a new name")


def _shape_text(shape):
    return "[%s]" % ", ".join(str(d) for d in shape)


class Eltwise(LayerDef):
    """SUM (with one coeff per bottom), PROD or MAX of bottoms of one shape."""
    type = "Eltwise"
    fresh_output = True
    param_field = "eltwise_param"
    dsl_name = "eltwise"
    dsl_positional = ("operation",)
    draw_color = "#b3e5fc"
    bottoms = (2, None)

    def check(self, layer, shapes):
        p = layer.param.eltwise_param
        if p.coeff and p.operation == PROD:
            raise ShapeError("coeff is only for operation SUM", "remove coeff, or use operation: SUM")
        if p.coeff and len(p.coeff) != len(shapes):
            raise ShapeError("%d coeff values for %d bottoms" % (len(p.coeff), len(shapes)),
                             "give one coeff per bottom")
        names = list(layer.param.bottom)
        for name, shape in zip(names[1:], shapes[1:]):
            if tuple(shape) != tuple(shapes[0]):
                raise ShapeError("Eltwise needs bottoms of one shape: '%s' is %s but '%s' is %s"
                                 % (name, _shape_text(shape), names[0], _shape_text(shapes[0])),
                                 _projection_hint(names, shapes))
        return p

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        return [tuple(shapes[0])]

    def macs(self, layer, shapes, out_shapes):
        # SUM accumulates every bottom into the top (Caffe's axpy per bottom); PROD
        # multiplies all but the first in; MAX only compares.
        p = layer.param.eltwise_param
        per_bottom = {SUM: len(shapes), PROD: len(shapes) - 1}.get(p.operation, 0)
        return per_bottom * prod(shapes[0][1:])

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeEltwise
        p = self.check(layer, shapes)
        coeff = list(p.coeff) if p.operation == SUM and p.coeff else None
        return CaffeEltwise(caffe_pb2.EltwiseParameter.EltwiseOp.Name(p.operation), coeff)

    def in_place_bottom(self, layer, private):
        p = layer.param.eltwise_param
        if private and p.operation == SUM and not p.coeff and len(layer.bottoms) == 2:
            # Into the later bottom: the value just computed, still in cache, as `out +=
            # identity` does (measured: fewer page faults per ResNet-50 forward, 70k -> 60k).
            return private[-1]
        return None

    def lower_in_place(self, layer, module, index):
        from compiler.runtime.structure import InPlaceSum
        return InPlaceSum(index)


def _projection_hint(names, shapes):
    """How ResNet adds blobs whose channels or size differ: a projection shortcut W_s, a 1x1
    convolution with the target's channels and the stride mapping the larger size onto
    the target's. The target is the smallest blob (deepest branch), with the most channels."""
    ndim = len(shapes[0])
    if any(len(s) != ndim for s in shapes):
        return "give every bottom the same number of axes (Reshape or Flatten the others)"
    if ndim < 2 or any(s[0] != shapes[0][0] for s in shapes):
        return None
    target = min(shapes, key=lambda s: (prod(s[2:]), -s[1]))
    fixes = []
    for name, shape in zip(names, shapes):
        shape = tuple(shape)
        if shape == tuple(target):
            continue
        if ndim == 2:
            fixes.append("add an InnerProduct (W_s) on '%s' with num_output: %d" % (name, target[1]))
            continue
        stride = _projection_stride(shape[2:], target[2:])
        if stride is None:
            fixes.append("no strided 1x1 Convolution maps '%s' (size %s) onto size %s: change "
                         "the layers that produce it" % (name, _shape_text(shape[2:]),
                                                         _shape_text(target[2:])))
        else:
            fixes.append("add a 1x1 Convolution (W_s) on '%s' with num_output: %d and stride: %d"
                         % (name, target[1], stride))
    return "; ".join(fixes)


def _projection_stride(sizes, target):
    """The stride s with (n - 1) // s + 1 == m on every axis (Caffe's output size for a
    1x1 kernel without padding), or None."""
    stride = -(-sizes[0] // target[0])
    if all((n - 1) // stride + 1 == m for n, m in zip(sizes, target)):
        return stride
    return None


def _legacy_axis(p, legacy, shape, what):
    """Concat's concat_dim and Slice's slice_dim: older spellings of `axis`, non-negative."""
    if p.HasField("axis") and p.HasField(legacy):
        raise ShapeError("give either axis or %s, not both" % legacy, "use axis (%s is its old name)" % legacy)
    if p.HasField(legacy):
        if getattr(p, legacy) >= len(shape):
            raise ShapeError("%s %d is out of range for a %d-axis blob" % (legacy, getattr(p, legacy), len(shape)))
        return getattr(p, legacy)
    return canonical_axis(p.axis, len(shape), what)


class Concat(LayerDef):
    type = "Concat"
    param_field = "concat_param"
    dsl_name = "concat"
    draw_color = "#b3e5fc"
    bottoms = (1, None)

    def axis(self, layer, shapes):
        axis = _legacy_axis(layer.param.concat_param, "concat_dim", shapes[0], "concat axis")
        names = list(layer.param.bottom)
        for name, shape in zip(names[1:], shapes[1:]):
            if len(shape) != len(shapes[0]):
                raise ShapeError("Concat needs bottoms with the same number of axes: '%s' is %s "
                                 "but '%s' is %s" % (name, _shape_text(shape), names[0],
                                                     _shape_text(shapes[0])),
                                 "Reshape or Flatten '%s' to %d axes" % (name, len(shapes[0])))
            for i, (a, b) in enumerate(zip(shapes[0], shape)):
                if i != axis and a != b:
                    raise ShapeError("Concat on axis %d needs the other axes to match: '%s' is %s "
                                     "but '%s' is %s (axis %d)" % (axis, name, _shape_text(shape), names[0],
                                                                   _shape_text(shapes[0]), i),
                                     _same_padding_hint(names, shapes, axis))
        return axis

    def shape(self, layer, shapes):
        axis = self.axis(layer, shapes)
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [tuple(out)]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeConcat
        return CaffeConcat(self.axis(layer, shapes))


def _same_padding_hint(names, shapes, axis):
    """Bottoms of a channel Concat (an Inception module) that come out smaller than the
    others lost rows to a stride-1 window without enough padding: a kernel k keeps its
    input's size with pad (k - 1) / 2, so a bottom d smaller needs d / 2 more pad."""
    ndim = len(shapes[0])
    differing = {i for s in shapes for i in range(ndim) if i != axis and s[i] != shapes[0][i]}
    if axis >= 2 or min(differing) < 2:
        return "make every bottom's shape match on all axes but %d" % axis
    largest = [max(s[i] for s in shapes) for i in range(2, ndim)]
    fixes = []
    for name, shape in zip(names, shapes):
        short = [m - n for m, n in zip(largest, shape[2:])]
        if not any(short):
            continue
        what = "'%s' is %s smaller than the largest bottoms %s" % (
            name, "x".join(map(str, short)), _shape_text(largest))
        if any(d % 2 for d in short):
            fixes.append(what + ", an odd difference that no symmetric pad makes up: Crop the "
                         "larger bottoms to its size")
            continue
        pads = [d // 2 for d in short]
        pad = "pad: %d" % pads[0] if len(set(pads)) == 1 else " ".join("pad: %d" % p for p in pads)
        fixes.append(what + ": the stride-1 layer producing it needs %s more (a kernel k keeps "
                     "its input's size with pad: (k-1)/2)" % pad)
    return "; ".join(fixes)


class Slice(LayerDef):
    type = "Slice"
    param_field = "slice_param"
    dsl_name = "slice"
    tops = (1, None)

    def axis(self, layer, shape):
        return _legacy_axis(layer.param.slice_param, "slice_dim", shape, "slice axis")

    def shape(self, layer, shapes):
        axis = self.axis(layer, shapes[0])
        sizes = slice_sizes(shapes[0][axis], list(layer.param.slice_param.slice_point),
                            len(layer.param.top), axis)
        return [tuple(shapes[0][:axis]) + (n,) + tuple(shapes[0][axis + 1:]) for n in sizes]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeSlice
        return CaffeSlice(self.axis(layer, shapes[0]), list(layer.param.slice_param.slice_point),
                          len(layer.param.top))


class Split(LayerDef):
    """Every top is the bottom. Caffe shares the memory, which the wiring pass models
    (an in-place write on one top rewrites them all); the gradients of the tops add up."""
    type = "Split"
    tops = (1, None)
    aliases_bottom = True
    dsl_name = "split"

    def shape(self, layer, shapes):
        not_in_place(layer)
        return [tuple(shapes[0])] * len(layer.param.top)

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeSplit
        return CaffeSplit(len(layer.param.top))


class Crop(LayerDef):
    """Crop the first bottom to the second's size on the axes from `axis` on. The second
    bottom only gives the size: its values are never read (nor get a gradient)."""
    type = "Crop"
    param_field = "crop_param"
    dsl_name = "crop"
    bottoms = (2, 2)

    def offsets(self, layer, shapes):
        p = layer.param.crop_param
        data, ref = shapes
        if len(data) != len(ref):
            raise ShapeError("Crop needs a reference with as many axes as the input (%d), got %d"
                             % (len(data), len(ref)))
        axis = canonical_axis(p.axis, len(data), "crop axis")
        cropped = len(data) - axis
        offsets = list(p.offset)
        if len(offsets) <= 1:
            offsets = (offsets or [0]) * cropped
        elif len(offsets) != cropped:
            raise ShapeError("%d offsets for the %d axes from axis %d" % (len(offsets), cropped, axis),
                             "give one offset for all of them or one per axis")
        for i, off in enumerate(offsets, axis):
            if data[i] - off < ref[i]:
                if ref[i] > data[i]:
                    hint = "the reference is larger than the input on axis %d: check the bottoms' order" % i
                else:
                    hint = "use offset %d or less on axis %d" % (data[i] - ref[i], i)
                raise ShapeError("crop on axis %d: offset %d + reference size %d exceeds the input's "
                                 "size %d" % (i, off, ref[i], data[i]), hint)
        return axis, offsets

    def shape(self, layer, shapes):
        axis, _ = self.offsets(layer, shapes)
        return [tuple(shapes[0][:axis]) + tuple(shapes[1][axis:])]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeCrop
        return CaffeCrop(*self.offsets(layer, shapes))


class Flatten(LayerDef):
    type = "Flatten"
    param_field = "flatten_param"
    dsl_name = "flatten"

    def axes(self, layer, shape):
        not_in_place(layer)
        p = layer.param.flatten_param
        start = canonical_axis(p.axis, len(shape), "axis")
        end = canonical_axis(p.end_axis, len(shape), "end_axis")
        if end < start:
            raise ShapeError("end_axis %d comes before axis %d" % (p.end_axis, p.axis))
        return start, end

    def shape(self, layer, shapes):
        start, end = self.axes(layer, shapes[0])
        shape = tuple(shapes[0])
        return [shape[:start] + (prod(shape[start:end + 1]),) + shape[end + 1:]]

    def lower(self, layer, shapes):
        import torch.nn as nn
        return nn.Flatten(*self.axes(layer, shapes[0]))


class Reshape(LayerDef):
    type = "Reshape"
    param_field = "reshape_param"
    dsl_name = "reshape"
    dsl_positional = ("shape",)

    def shape(self, layer, shapes):
        not_in_place(layer)
        p = layer.param.reshape_param
        return [reshape_rule(tuple(shapes[0]), list(p.shape.dim), p.axis, p.num_axes)]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeReshape
        self.shape(layer, shapes)
        p = layer.param.reshape_param
        return CaffeReshape(list(p.shape.dim), p.axis, p.num_axes)


def reshape_rule(shape, dims, axis, num_axes):
    """The top's shape, with the -1 inferred from the bottom's count."""
    out = reshape_target(shape, dims, axis, num_axes)
    count = prod(shape)
    if -1 in out:
        known = prod(d for d in out if d != -1)
        if known == 0 or count % known:
            raise ShapeError("the bottom's %d values do not divide into shape %s (product of the "
                             "given dimensions %d)" % (count, dims, known),
                             "make the given dimensions divide %d" % count)
        out[out.index(-1)] = count // known
    if prod(out) != count:
        raise ShapeError("shape %s gives %s = %d values but the bottom has %d"
                         % (dims, _shape_text(out), prod(out), count),
                         "use -1 for one dimension to infer it, or 0 to copy the bottom's")
    return tuple(out)


class Tile(LayerDef):
    """The whole block of axes from `axis` on, repeated `tiles` times."""
    type = "Tile"
    param_field = "tile_param"

    def repeats(self, layer, shape):
        p = layer.param.tile_param
        axis = canonical_axis(p.axis, len(shape))
        if not p.HasField("tiles") or p.tiles <= 0:
            raise ShapeError("tiles must be set and positive", "add tiles: N (N >= 1)")
        reps = [1] * len(shape)
        reps[axis] = p.tiles
        return reps

    def shape(self, layer, shapes):
        return [tuple(d * r for d, r in zip(shapes[0], self.repeats(layer, shapes[0])))]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeTile
        return CaffeTile(self.repeats(layer, shapes[0]))


class Im2col(LayerDef):
    """Convolution's unfolding as a layer: every kernel_h x kernel_w window (with pad,
    stride and dilation, from convolution_param) of an (N, C, H, W) input becomes a column,
    giving (N, C * kernel_h * kernel_w, H_out, W_out), the sizes rounded down as
    Convolution's are. The channel axis is Caffe's column layout: channel-major, then the
    kernel's rows, then its columns (c * kh * kw + i * kw + j); padding reads zeros. The
    gradient of an input value adds up over every column that copied it (col2im).
    netdef supports 2-D inputs with channels on axis 1 (Caffe also unfolds N-D)."""
    type = "Im2col"
    param_field = "convolution_param"
    dsl_name = "im2col"
    dsl_positional = ("kernel_size", "stride", "pad")
    dsl_abbreviations = dict(k="kernel_size", s="stride", p="pad", d="dilation")

    def draw_label(self, layer):
        return geometry_text(layer.param.convolution_param)

    def geometry(self, layer, shape):
        p = layer.param.convolution_param
        if len(shape) != 4 or p.axis not in (1, -3):
            raise ShapeError("netdef's Im2col needs an (N, C, H, W) input with channels on axis 1, got "
                             "%s, axis %d" % (list(shape), p.axis))
        kernel, pad, stride, dilation = spatial_geometry(p, 2)
        if any(k is None for k in kernel):
            raise ShapeError("kernel size is not set", "add kernel_size (or kernel_h and kernel_w)")
        if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
            raise ShapeError("kernel, stride and dilation must be positive (kernel %s, stride %s, "
                             "dilation %s)" % (kernel, stride, dilation))
        out = []
        for size, k, pd, s, d in zip(shape[2:], kernel, pad, stride, dilation):
            extent = d * (k - 1) + 1
            if size + 2 * pd < extent:
                raise ShapeError("kernel %d (extent %d with dilation %d) is larger than the padded input %d"
                                 % (k, extent, d, size + 2 * pd), "use a smaller kernel or more padding")
            out.append((size + 2 * pd - extent) // s + 1)
        return kernel, pad, stride, dilation, out

    def shape(self, layer, shapes):
        n, c = shapes[0][:2]
        kernel, _, _, _, out = self.geometry(layer, shapes[0])
        return [(n, c * prod(kernel)) + tuple(out)]

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeIm2col
        kernel, pad, stride, dilation, _ = self.geometry(layer, shapes[0])
        return CaffeIm2col(kernel, pad, stride, dilation)


class Silence(LayerDef):
    """Reads its bottoms so that they are not net outputs; computes nothing, and gives
    them no gradient."""
    type = "Silence"
    dsl_name = "silence"
    bottoms = (1, None)
    tops = (0, 0)

    def shape(self, layer, shapes):
        return []

    def lower(self, layer, shapes):
        from compiler.runtime.structure import CaffeSilence
        return CaffeSilence()


LAYERS = [Eltwise(), Concat(), Slice(), Split(), Crop(), Flatten(), Reshape(), Tile(), Im2col(), Silence()]

"""Convolution and Deconvolution (Caffe's BaseConvolutionLayer family).

Caffe rounds convolution output sizes down: out = (in + 2*pad - ext) // stride + 1 with
ext = dilation*(kernel-1)+1. Deconvolution inverts it: out = stride*(in-1) + ext - 2*pad.
Weights are (C_out, C_in/group, k...) for Convolution and (C_in, C_out/group, k...) for
Deconvolution, which are also PyTorch's layouts, so blobs load without reshaping.
"""
from compiler.layers.base import LayerDef, ShapeError, geometry_text, prod, spatial_geometry
from compiler.layers.fillers import fill, zeros


class _ConvBase(LayerDef):
    param_field = "convolution_param"
    blob_names = ("weight", "bias")
    transposed = False
    dsl_positional = ("num_output", "kernel_size", "stride", "pad")
    dsl_abbreviations = dict(k="kernel_size", s="stride", p="pad", d="dilation", g="group", bias="bias_term")
    conv_fc_macs = True
    draw_color = "#ff9a8a"

    def draw_label(self, layer):
        c = layer.param.convolution_param
        text = geometry_text(c)
        if c.group != 1:
            text += " g%d" % c.group
        if list(c.dilation) and set(c.dilation) != {1}:
            text += " d%s" % "x".join(str(d) for d in c.dilation)
        return "%s, %s out" % (text, c.num_output if c.HasField("num_output") else "?")

    def geometry(self, layer, shape):
        p = layer.param.convolution_param
        if p.axis not in (1, -len(shape) + 1):
            raise ShapeError("convolution_param.axis %d: netdef supports channels on axis 1" % p.axis)
        if len(shape) < 3:
            raise ShapeError("%s needs an (N, C, spatial...) input, got %s" % (self.type, list(shape)))
        nspatial = len(shape) - 2
        kernel, pad, stride, dilation = spatial_geometry(p, nspatial)
        if any(k is None for k in kernel):
            raise ShapeError("kernel size is not set", "add kernel_size (or kernel_h and kernel_w)")
        if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
            raise ShapeError("kernel, stride and dilation must be positive (kernel %s, stride %s, "
                             "dilation %s)" % (kernel, stride, dilation))
        if not p.HasField("num_output") or p.num_output <= 0:
            raise ShapeError("num_output must be set and positive")
        channels = shape[1]
        group = p.group
        if group <= 0:
            raise ShapeError("group must be positive")
        if channels % group:
            raise ShapeError("group %d does not divide the %d input channels" % (group, channels),
                             "use a group count that divides %d, e.g. %s"
                             % (channels, _divisors(channels, p.num_output)))
        if p.num_output % group:
            raise ShapeError("group %d does not divide num_output %d" % (group, p.num_output),
                             "use a group count that divides %d, e.g. %s"
                             % (p.num_output, _divisors(channels, p.num_output)))
        return p, kernel, pad, stride, dilation

    def blob_shapes(self, layer, shapes):
        p, kernel, _, _, _ = self.geometry(layer, shapes[0])
        c_in = shapes[0][1]
        if self.transposed:
            w = (c_in, p.num_output // p.group) + tuple(kernel)
        else:
            w = (p.num_output, c_in // p.group) + tuple(kernel)
        return [w, (p.num_output,)] if p.bias_term else [w]

    def macs(self, layer, shapes, out_shapes):
        weight = prod(self.blob_shapes(layer, shapes)[0])
        spatial = shapes[0][2:] if self.transposed else out_shapes[0][2:]
        return weight * prod(spatial)

    def workspace_values(self, layer, shapes):
        """PyTorch's CPU convolution unfolds one item of the batch at a time (im2col) unless
        the kernel is 1x1 with stride 1: (C_in / group) x kernel values per output position.
        VGG-16's conv1_2 unfolds 110 MiB for each image."""
        p, kernel, pad, stride, dilation = self.geometry(layer, shapes[0])
        if all(k == 1 for k in kernel) and all(s == 1 for s in stride):
            return 0
        # A Deconvolution's columns are its output channels by its input positions (col2im).
        if self.transposed:
            return p.num_output // p.group * prod(kernel) * prod(shapes[0][2:])
        return shapes[0][1] // p.group * prod(kernel) * prod(self.shape(layer, shapes)[0][2:])

    def lower(self, layer, shapes):
        import torch.nn as nn
        p, kernel, pad, stride, dilation = self.geometry(layer, shapes[0])
        nspatial = len(kernel)
        cls = {(1, False): nn.Conv1d, (2, False): nn.Conv2d, (3, False): nn.Conv3d,
               (1, True): nn.ConvTranspose1d, (2, True): nn.ConvTranspose2d,
               (3, True): nn.ConvTranspose3d}.get((nspatial, self.transposed))
        if cls is None:
            raise ShapeError("%d-D %s is not supported by the PyTorch backend" % (nspatial, self.type))
        # Built on the meta device, then given real parameters: Caffe's fillers set every
        # value, so PyTorch's own init would be wasted (and skip_init, which would skip it
        # too, imports sympy on first use: a third of a second per process). Without a
        # filler the blobs are Caffe's default, zero, in pages mapped on first write (zeros()).
        m = cls(shapes[0][1], p.num_output, tuple(kernel), stride=tuple(stride), padding=tuple(pad),
                dilation=tuple(dilation), groups=p.group, bias=p.bias_term, device="meta")
        m.weight = nn.Parameter(zeros(m.weight.shape))
        if p.HasField("weight_filler"):
            fill(m.weight.data, p.weight_filler)
        if p.bias_term:
            m.bias = nn.Parameter(zeros(m.bias.shape))
            if p.HasField("bias_filler"):
                fill(m.bias.data, p.bias_filler)
        return m


def _divisors(a, b):
    common = [g for g in range(1, min(a, b) + 1) if a % g == 0 and b % g == 0]
    return ", ".join(str(g) for g in common[-3:])


class Convolution(_ConvBase):
    type = "Convolution"
    fresh_output = True
    dsl_name = "conv"

    def shape(self, layer, shapes):
        shape = shapes[0]
        p, kernel, pad, stride, dilation = self.geometry(layer, shape)
        out = []
        for i, (k, pd, s, d) in enumerate(zip(kernel, pad, stride, dilation)):
            size = shape[2 + i]
            ext = d * (k - 1) + 1
            if size + 2 * pd < ext:
                raise ShapeError("kernel %d (extent %d with dilation %d) is larger than the padded "
                                 "input %d (size %d + 2*pad %d)" % (k, ext, d, size + 2 * pd, size, pd),
                                 "use a smaller kernel or more padding, or check the input size")
            out.append((size + 2 * pd - ext) // s + 1)
        return [tuple(shape[:1]) + (p.num_output,) + tuple(out)]


class Deconvolution(_ConvBase):
    type = "Deconvolution"
    transposed = True
    dsl_name = "deconv"

    def shape(self, layer, shapes):
        shape = shapes[0]
        p, kernel, pad, stride, dilation = self.geometry(layer, shape)
        out = []
        for i, (k, pd, s, d) in enumerate(zip(kernel, pad, stride, dilation)):
            size = s * (shape[2 + i] - 1) + d * (k - 1) + 1 - 2 * pd
            if size <= 0:
                raise ShapeError("output size %d is not positive (pad %d too large)" % (size, pd))
            out.append(size)
        return [tuple(shape[:1]) + (p.num_output,) + tuple(out)]


LAYERS = [Convolution(), Deconvolution()]

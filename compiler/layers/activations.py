"""Elementwise layers: the output has the bottom's shape and may be computed in place.

Each module computes Caffe's formula with Caffe's constants; gradients come from autograd
and agree with Caffe's Backward_cpu (PReLU, ReLU and Clip treat the kink points as Caffe
does because the PyTorch ops chosen here do). Threshold, like Caffe's, has no gradient.
"""
import math

from compiler.layers.base import LayerDef, ShapeError
from compiler.layers.fillers import fill


class Elementwise(LayerDef):
    def shape(self, layer, shapes):
        self.check(layer, shapes[0])
        return [tuple(shapes[0])]

    def check(self, layer, shape):
        """Raise ShapeError for parameters Caffe refuses."""

    def lower(self, layer, shapes):
        self.check(layer, shapes[0])
        return self.module(self.params(layer), shapes[0])

    def module(self, p, shape):
        raise NotImplementedError


class ReLU(Elementwise):
    type = "ReLU"
    param_field = "relu_param"
    in_place = True
    dsl_name = "relu"
    dsl_abbreviations = {"slope": "negative_slope"}

    def module(self, p, shape):
        import torch.nn as nn
        return nn.LeakyReLU(p.negative_slope) if p.negative_slope else nn.ReLU()

    def in_place_bottom(self, layer, private):
        return private[0] if private else None

    def lower_in_place(self, layer, module, index):
        module.inplace = True
        return module


class PReLU(Elementwise):
    """y = max(0, x) + a * min(0, x), a per channel (axis 1) or one shared scalar."""
    type = "PReLU"
    param_field = "prelu_param"
    in_place = True
    dsl_name = "prelu"
    blob_names = ("weight",)

    def check(self, layer, shape):
        if len(shape) < 2:
            raise ShapeError("PReLU needs a bottom with at least 2 axes (channels on axis 1)")

    def blob_shapes(self, layer, shapes):
        # Caffe makes the shared slope a 0-axis blob, not shape (1,).
        return [()] if layer.param.prelu_param.channel_shared else [(shapes[0][1],)]

    def module(self, p, shape):
        from compiler.runtime.activations import CaffePReLU
        module = CaffePReLU(() if p.channel_shared else (shape[1],))
        if p.HasField("filler"):
            fill(module.weight.data, p.filler)
        return module


class ELU(Elementwise):
    type = "ELU"
    param_field = "elu_param"
    in_place = True
    dsl_name = "elu"

    def module(self, p, shape):
        import torch.nn as nn
        return nn.ELU(p.alpha)


class Sigmoid(Elementwise):
    type = "Sigmoid"
    param_field = "sigmoid_param"
    dsl_name = "sigmoid"

    def module(self, p, shape):
        import torch.nn as nn
        return nn.Sigmoid()


class TanH(Elementwise):
    type = "TanH"
    param_field = "tanh_param"
    dsl_name = "tanh"

    def module(self, p, shape):
        import torch.nn as nn
        return nn.Tanh()


class AbsVal(Elementwise):
    type = "AbsVal"

    def module(self, p, shape):
        from compiler.runtime.activations import Abs
        return Abs()


class BNLL(Elementwise):
    type = "BNLL"

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeBNLL
        return CaffeBNLL()


class Power(Elementwise):
    type = "Power"
    param_field = "power_param"
    dsl_name = "power"

    def module(self, p, shape):
        from compiler.runtime.activations import CaffePower
        return CaffePower(p.power, p.scale, p.shift)


class Exp(Elementwise):
    type = "Exp"
    param_field = "exp_param"

    def check(self, layer, shape):
        _check_base(layer.param.exp_param.base)

    def module(self, p, shape):
        # Caffe's ExpLayer: base^(shift + scale*x) = base^shift * e^(ln(base)*scale*x).
        from compiler.runtime.activations import CaffeExp
        ln_base = 1.0 if p.base == -1 else math.log(p.base)
        outer = 1.0 if p.shift == 0 else (math.exp(p.shift) if p.base == -1 else p.base ** p.shift)
        return CaffeExp(ln_base * p.scale, outer)


class Log(Elementwise):
    type = "Log"
    param_field = "log_param"

    def check(self, layer, shape):
        base = layer.param.log_param.base
        _check_base(base)
        if base == 1:
            # Caffe's LogLayer divides by log(base) and CHECKs that 1 / log(base) is finite.
            raise ShapeError("base 1 has no logarithm: log_1(x) would divide by log(1) = 0",
                             "use base -1 (e), 2 or 10")

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeLog
        return CaffeLog(p.scale, p.shift, 1.0 if p.base == -1 else 1.0 / math.log(p.base))


class Threshold(Elementwise):
    type = "Threshold"
    param_field = "threshold_param"

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeThreshold
        return CaffeThreshold(p.threshold)


class Clip(Elementwise):
    type = "Clip"
    param_field = "clip_param"

    def check(self, layer, shape):
        p = layer.param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise ShapeError("Clip needs both clip_param.min and clip_param.max")
        if p.min > p.max:
            raise ShapeError("clip_param.min %g is greater than max %g" % (p.min, p.max))

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeClip
        return CaffeClip(p.min, p.max)


class Swish(Elementwise):
    type = "Swish"
    param_field = "swish_param"

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeSwish
        return CaffeSwish(p.beta)


class Dropout(Elementwise):
    type = "Dropout"
    param_field = "dropout_param"
    in_place = True
    dsl_name = "dropout"
    dsl_positional = ("dropout_ratio",)
    dsl_abbreviations = {"ratio": "dropout_ratio"}

    def check(self, layer, shape):
        ratio = layer.param.dropout_param.dropout_ratio
        if not 0 <= ratio < 1:
            raise ShapeError("dropout_ratio %g is outside [0, 1)" % ratio)

    def module(self, p, shape):
        from compiler.runtime.activations import CaffeDropout
        return CaffeDropout(p.dropout_ratio, p.scale_train)


def _check_base(base):
    """Caffe's Exp and Log layers: CHECK_GT(base, 0) unless base is -1 (e), and log(base)
    must be finite."""
    if base != -1 and not 0 < base < math.inf:
        raise ShapeError("base %g must be a positive finite number (or -1 for e)" % base)


LAYERS = [ReLU(), PReLU(), ELU(), Sigmoid(), TanH(), AbsVal(), BNLL(), Power(), Exp(), Log(),
          Threshold(), Clip(), Swish(), Dropout()]

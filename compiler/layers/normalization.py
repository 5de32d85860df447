"""LRN, BatchNorm and MVN, with Caffe's formulas (where eps goes, what blob 2 means).

- LRN ACROSS_CHANNELS: x / (k + alpha/size * sum of x^2 over `size` channels centred on
  the channel, the window clipped at the ends)^beta.
  WITHIN_CHANNEL: x / (1 + alpha/size^2 * sum of x^2 over a size x size window,
  zero-padded by (size-1)/2)^beta; Caffe builds it from AVE pooling and ignores k.
- BatchNorm holds running sums, not averages: blob 2 is the sum of the decay weights, so
  the statistics are mean = blob0/blob2 and var = blob1/blob2 (0 where blob2 is 0).
  eps is added to the variance. TRAIN without use_global_stats normalizes by the batch
  statistics (biased variance) and accumulates blob = fraction*blob + stat, the variance
  stat corrected by m/(m-1), blob2 = fraction*blob2 + 1.
- MVN subtracts the mean per (item, channel), or per item with across_channels, and
  divides by std + eps (eps on the standard deviation, not the variance).
"""
import math

from compiler.layers.base import LayerDef, ShapeError

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1


class LRN(LayerDef):
    type = "LRN"
    param_field = "lrn_param"
    dsl_name = "lrn"
    dsl_positional = ("local_size",)
    dsl_abbreviations = {"size": "local_size"}

    def shape(self, layer, shapes):
        self._check(layer, shapes[0])
        return [tuple(shapes[0])]

    def _check(self, layer, shape):
        if len(shape) != 4:
            raise ShapeError("LRN needs an (N, C, H, W) input, got %s" % list(shape))
        size = layer.param.lrn_param.local_size
        if size % 2 == 0:
            raise ShapeError("local_size %d is even; Caffe's LRN supports odd sizes only" % size,
                             "use local_size %d or %d" % (size - 1, size + 1) if size else None)

    def workspace_values(self, layer, shapes):
        """ACROSS_CHANNELS (F.local_response_norm) holds the squares and the squares
        zero-padded to C + size - 1 channels at once; WITHIN_CHANNEL the squares and their
        window means. Caffe's own workspace is the same size (its padded_square and
        scale blobs), so a huge local_size costs memory, not just time."""
        n, c, h, w = shapes[0]
        size = layer.param.lrn_param.local_size
        channels = 2 * c if layer.param.lrn_param.norm_region == WITHIN_CHANNEL else 2 * c + size - 1
        return n * channels * h * w

    def lower(self, layer, shapes):
        from compiler.runtime.normalization import CaffeLRN
        self._check(layer, shapes[0])
        p = layer.param.lrn_param
        return CaffeLRN(p.local_size, p.alpha, p.beta, p.k, p.norm_region == WITHIN_CHANNEL)


class BatchNorm(LayerDef):
    type = "BatchNorm"
    fresh_output = True
    param_field = "batch_norm_param"
    in_place = True
    dsl_name = "bn"
    dsl_abbreviations = {"global": "use_global_stats"}
    blob_names = ("mean", "variance", "factor")
    stat_blobs = (0, 1, 2)

    def shape(self, layer, shapes):
        eps = layer.param.batch_norm_param.eps
        # Caffe takes any eps, and a negative one makes var + eps negative (NaN outputs)
        # for every channel whose variance is smaller: refused here, before anything runs.
        if not 0 <= eps < math.inf:
            raise ShapeError("eps %g must be a finite number >= 0: it is added to the variance "
                             "before the square root" % eps, "Caffe's default is 1e-5")
        return [tuple(shapes[0])]

    def blob_shapes(self, layer, shapes):
        c = _bn_channels(shapes[0])
        return [(c,), (c,), (1,)]

    def uses_global_stats(self, layer, phase):
        """Whether the layer normalizes with its stored statistics in `phase` (TRAIN or
        TEST): Caffe's use_global_stats defaults to (phase == TEST)."""
        p = layer.param.batch_norm_param
        return p.use_global_stats if p.HasField("use_global_stats") else phase == "TEST"

    def lower(self, layer, shapes):
        from compiler.runtime.normalization import CaffeBatchNorm
        p = layer.param.batch_norm_param
        return CaffeBatchNorm(_bn_channels(shapes[0]), p.eps, p.moving_average_fraction,
                              p.use_global_stats if p.HasField("use_global_stats") else None)


def _bn_channels(shape):
    if not shape:
        raise ShapeError("BatchNorm needs a bottom with at least one axis")
    return shape[1] if len(shape) > 1 else 1


class MVN(LayerDef):
    type = "MVN"
    param_field = "mvn_param"

    def shape(self, layer, shapes):
        _mvn_check(shapes[0])
        return [tuple(shapes[0])]

    def lower(self, layer, shapes):
        from compiler.runtime.normalization import CaffeMVN
        _mvn_check(shapes[0])
        p = layer.param.mvn_param
        return CaffeMVN(p.normalize_variance, p.across_channels, p.eps)


def _mvn_check(shape):
    # Caffe's MVN reads num() and channels(), legacy accessors for blobs of up to 4 axes.
    if not 1 <= len(shape) <= 4:
        raise ShapeError("MVN takes a bottom of 1 to 4 axes (N, C, H, W), got %s" % list(shape))


LAYERS = [LRN(), BatchNorm(), MVN()]

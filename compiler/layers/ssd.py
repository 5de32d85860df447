"""The SSD branch's layers (weiliu89/caffe): Normalize, Permute, PriorBox, DetectionOutput.

- Normalize divides by the L2 norm over the channels at each position (across_spatial
  false) or over the whole item, with eps added under the square root, then multiplies by
  a learned scale: one value (channel_shared, a 0-axis blob) or one per channel.
- Permute reorders the axes; axes the order leaves out follow in their own order.
- PriorBox gives, for every position of its first bottom, boxes normalized by the image
  size (second bottom, or img_size/img_h/img_w): per min_size a min_size square, a
  sqrt(min_size * max_size) square, then one box per aspect ratio other than 1 (with
  flip, each ratio's inverse too). Sizes are truncated to integers as Caffe does. Top
  (1, 2, H*W*num_priors*4): the boxes, then their variances.
- DetectionOutput decodes the location predictions against the priors, runs a greedy NMS
  per class over the scores above confidence_threshold (the nms top_k best first), keeps
  the keep_top_k best of all classes and returns (1, 1, rows, 7) rows of
  [image, label, score, xmin, ymin, xmax, ymax], by image, then label, then score.
  Caffe computes boxes in float32 (NormalizedBBox holds floats) in a fixed order of
  operations that decides the NMS comparisons, so the module follows that order. Without
  nms_param the NMS still runs, with its defaults (threshold 0.3), as in weiliu89/caffe.
  Equal scores keep prior order in the NMS (Caffe's stable_sort); where keep_top_k cuts,
  Caffe's std::sort leaves the order of equal scores unspecified and netdef keeps them by
  label, then NMS order.

Caffe reads channels(), height() and width() of these bottoms, legacy accessors: at most
4 axes, a missing trailing axis counting as 1.
"""
import math

from compiler.layers.arithmetic import FLT_MAX, f32
from compiler.layers.base import LayerDef, ShapeError, prod
from compiler.layers.fillers import fill
from compiler.layers.structure import not_in_place
from compiler.proto import caffe_pb2


def legacy_dim(shape, index, what):
    """Caffe's Blob::LegacyShape: num, channels, height, width of a blob of <= 4 axes."""
    if len(shape) > 4:
        raise ShapeError("%s has %d axes; Caffe reads it as (num, channels, height, width), "
                         "at most 4" % (what, len(shape)))
    return shape[index] if index < len(shape) else 1


class Normalize(LayerDef):
    type = "Normalize"
    param_field = "norm_param"
    blob_names = ("scale",)

    def shape(self, layer, shapes):
        self.channels(shapes[0])
        return [tuple(shapes[0])]

    def channels(self, shape):
        if len(shape) < 2:
            raise ShapeError("Normalize needs a bottom of at least 2 axes (N, C, ...), got %s"
                             % list(shape))
        return legacy_dim(shape, 1, "Normalize's bottom")

    def blob_shapes(self, layer, shapes):
        shared = layer.param.norm_param.channel_shared
        return [() if shared else (self.channels(shapes[0]),)]

    def lower(self, layer, shapes):
        from compiler.runtime.ssd import CaffeNormalize
        p = layer.param.norm_param
        module = CaffeNormalize(self.channels(shapes[0]), p.across_spatial, p.eps, p.channel_shared)
        if p.HasField("scale_filler"):
            fill(module.scale.data, p.scale_filler)
        return module


class Permute(LayerDef):
    type = "Permute"
    param_field = "permute_param"

    def order(self, layer, shape):
        order = list(layer.param.permute_param.order)
        for axis in order:
            if axis >= len(shape):
                raise ShapeError("order %d is out of range for a %d-axis bottom" % (axis, len(shape)))
        if len(set(order)) != len(order):
            raise ShapeError("order %s repeats an axis" % order, "name each axis at most once")
        return order + [a for a in range(len(shape)) if a not in order]

    def shape(self, layer, shapes):
        # Caffe permutes by reading the bottom while writing the top: never in place.
        not_in_place(layer)
        return [tuple(shapes[0][a] for a in self.order(layer, shapes[0]))]

    def lower(self, layer, shapes):
        from compiler.runtime.ssd import CaffePermute
        return CaffePermute(self.order(layer, shapes[0]))


class PriorBox(LayerDef):
    type = "PriorBox"
    param_field = "prior_box_param"
    bottoms = (2, 2)

    def geometry(self, layer):
        """Caffe's LayerSetUp checks and values: box sizes (w, h) per position, variances,
        the fixed image size (0 for the second bottom's) and step (0 for image / layer)."""
        p = layer.param.prior_box_param
        if not p.min_size:
            raise ShapeError("PriorBox needs a min_size")
        _positive(p.min_size, "min_size")
        if p.max_size and len(p.max_size) != len(p.min_size):
            raise ShapeError("%d max_size values for %d min_size values" % (len(p.max_size), len(p.min_size)),
                             "give one max_size per min_size, or none")
        for lo, hi in zip(p.min_size, p.max_size):
            if not lo < hi < math.inf:
                raise ShapeError("max_size %g must be finite and greater than its min_size %g" % (hi, lo))
        # Caffe does not check the ratios; a ratio <= 0 would make NaN or infinite boxes.
        _positive(p.aspect_ratio, "aspect_ratio")
        if len(p.variance) not in (0, 1, 4):
            raise ShapeError("%d variance values; give 1 or 4 (default: one 0.1)" % len(p.variance))
        _positive(p.variance, "variance")
        image = self._pair(p, "img_size", "img_h", "img_w", int)
        step = self._pair(p, "step", "step_h", "step_w", float)

        ratios = [1.0]
        for ar in map(f32, p.aspect_ratio):
            if all(abs(f32(ar - r)) >= 1e-6 for r in ratios):
                ratios.append(ar)
                if p.flip:
                    ratios.append(f32(1.0 / ar))
        sizes = []
        for i, min_size in enumerate(p.min_size):
            # Caffe stores the sizes in ints (truncating) and the box sides in floats; the
            # square root of a float ratio is the float sqrt (golden SSD priors, bit for bit).
            lo = f32(int(min_size))
            sizes.append((lo, lo))
            if p.max_size:
                side = f32(math.sqrt(int(min_size) * int(p.max_size[i])))
                sizes.append((side, side))
            for ar in ratios:
                if abs(ar - 1) >= 1e-6:
                    root = f32(math.sqrt(ar))
                    sizes.append((f32(lo * root), f32(lo / root)))
        variance = [f32(v) for v in p.variance] or [f32(0.1)]
        return sizes, variance, image, step

    @staticmethod
    def _pair(p, both, h, w, kind):
        """(h, w) from `both` or from `h` and `w`, both positive; (0, 0) when none is set."""
        if p.HasField(h) or p.HasField(w):
            if p.HasField(both):
                raise ShapeError("give either %s or %s/%s, not both" % (both, h, w))
            _positive([getattr(p, h), getattr(p, w)], "%s and %s" % (h, w))
            return kind(getattr(p, h)), kind(getattr(p, w))
        if p.HasField(both):
            _positive([getattr(p, both)], both)
            return (kind(getattr(p, both)),) * 2
        return (kind(0),) * 2

    def shape(self, layer, shapes):
        not_in_place(layer)
        sizes, _, image, _ = self.geometry(layer)
        height = legacy_dim(shapes[0], 2, "PriorBox's first bottom")
        width = legacy_dim(shapes[0], 3, "PriorBox's first bottom")
        if not (image[0] and image[1]):
            legacy_dim(shapes[1], 3, "PriorBox's image bottom")
        return [(1, 2, height * width * len(sizes) * 4)]

    def lower(self, layer, shapes):
        from compiler.runtime.ssd import CaffePriorBox
        p = layer.param.prior_box_param
        sizes, variance, image, step = self.geometry(layer)
        return CaffePriorBox(sizes, variance, image, step, p.offset, p.clip)


def _positive(values, what):
    if not all(0 < v < math.inf for v in values):
        raise ShapeError("%s must be positive and finite, got %s"
                         % (what, ", ".join("%g" % v for v in values)))


class DetectionOutput(LayerDef):
    type = "DetectionOutput"
    param_field = "detection_output_param"
    # A fourth bottom is the image, read only to draw boxes (visualize), never for the top.
    bottoms = (3, 4)
    export_refusal = ("the number of rows it returns depends on the data (the boxes its greedy "
                      "NMS keeps), which a captured graph cannot express")

    def check(self, layer, shapes):
        p = layer.param.detection_output_param
        if not p.HasField("num_classes"):
            raise ShapeError("DetectionOutput needs num_classes")
        if p.share_location and p.background_label_id == -1:
            # Caffe skips decoding the shared boxes (label -1) as if they were background,
            # then aborts: "Could not find location predictions for label -1".
            raise ShapeError("share_location with background_label_id -1 makes Caffe abort",
                             "use a background_label_id in 0..%d, or share_location: false"
                             % (p.num_classes - 1))
        nms = p.nms_param
        if not nms.nms_threshold >= 0:
            raise ShapeError("nms_threshold must be non-negative, got %g" % nms.nms_threshold)
        if not 0 < nms.eta <= 1:
            raise ShapeError("eta must be in (0, 1], got %g" % nms.eta)
        loc, conf, prior = shapes[:3]
        priors = legacy_dim(prior, 2, "DetectionOutput's prior bottom") // 4
        loc_classes = 1 if p.share_location else p.num_classes
        if legacy_dim(loc, 0, "the location bottom") != legacy_dim(conf, 0, "the confidence bottom"):
            raise ShapeError("the location and confidence bottoms have different batch sizes")
        if priors * loc_classes * 4 != legacy_dim(loc, 1, "the location bottom"):
            raise ShapeError("%d location predictions per item for %d priors (need %d: 4 per "
                             "prior%s)" % (legacy_dim(loc, 1, ""), priors, priors * loc_classes * 4,
                                           "" if p.share_location else " and class"))
        if priors * p.num_classes != legacy_dim(conf, 1, "the confidence bottom"):
            raise ShapeError("%d confidence values per item for %d priors and %d classes (need %d)"
                             % (legacy_dim(conf, 1, ""), priors, p.num_classes, priors * p.num_classes))
        if prod(prior) < 2 * priors * 4:
            raise ShapeError("the prior bottom holds %d values, fewer than the %d boxes and "
                             "variances of %d priors" % (prod(prior), 8 * priors, priors))
        return p

    def shape(self, layer, shapes):
        not_in_place(layer)
        self.check(layer, shapes)
        # The number of rows is known only after the forward pass; Caffe declares 1.
        return [(1, 1, 1, 7)]

    def lower(self, layer, shapes):
        from compiler.runtime.ssd import CaffeDetectionOutput
        p = self.check(layer, shapes)
        nms = p.nms_param
        return CaffeDetectionOutput(
            p.num_classes, p.share_location, p.background_label_id,
            caffe_pb2.PriorBoxParameter.CodeType.Name(p.code_type),
            p.variance_encoded_in_target, p.keep_top_k,
            p.confidence_threshold if p.HasField("confidence_threshold") else -FLT_MAX,
            nms.nms_threshold, nms.eta, nms.top_k if nms.HasField("top_k") else -1)


LAYERS = [Normalize(), Permute(), PriorBox(), DetectionOutput()]

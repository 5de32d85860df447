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
import struct

import torch
import torch.nn as nn

from compiler.layers.base import LayerDef, ShapeError, prod
from compiler.layers.fillers import fill
from compiler.layers.structure import not_in_place
from compiler.proto import caffe_pb2

FLT_MAX = 3.4028234663852886e38
NMS_BLOCK = 512


def _f32(x):
    """x rounded to the nearest float32, as a Python float. One +, -, *, / or sqrt of
    float32 values computed in double and rounded so is the float32 operation's result
    (double has more than twice float's precision), so Caffe's float arithmetic on
    parameters is written as Python arithmetic wrapped in _f32."""
    return struct.unpack("f", struct.pack("f", x))[0]


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
        p = layer.param.norm_param
        module = CaffeNormalize(self.channels(shapes[0]), p.across_spatial, p.eps, p.channel_shared)
        if p.HasField("scale_filler"):
            fill(module.scale.data, p.scale_filler)
        return module


class CaffeNormalize(nn.Module):
    """The scale is one value (a 0-axis blob) when channel_shared, else one per channel;
    1 until set (the default filler)."""

    def __init__(self, channels, across_spatial, eps, channel_shared):
        super().__init__()
        self.channels, self.across_spatial, self.eps = channels, across_spatial, eps
        self.channel_shared = channel_shared
        self.scale = nn.Parameter(torch.ones(() if channel_shared else (channels,)))

    def extra_repr(self):
        return "%d, across_spatial=%s, eps=%g, channel_shared=%s" % (
            self.channels, self.across_spatial, self.eps, self.channel_shared)

    def forward(self, x):
        xr = x.reshape(x.shape[0], self.channels, -1)
        return _NormalizeFunction.apply(xr, self.scale, self.across_spatial, self.eps).reshape(x.shape)


class _NormalizeFunction(torch.autograd.Function):
    """y = x / norm * scale with Caffe's backward, which is not the exact gradient: it
    projects the top's gradient g without the scale, then multiplies by it,
    scale * (g - x * sum(x * g) / norm^2) / norm (the sums over the norm's positions).
    That equals the exact gradient only while every channel's scale is the same. The
    scale's gradient is sum(y * g) / scale, NaN where a scale is 0."""

    @staticmethod
    def forward(ctx, xr, scale, across_spatial, eps):
        dims = (1, 2) if across_spatial else 1
        norm = (xr.square().sum(dim=dims, keepdim=True) + eps).sqrt()
        # Caffe multiplies by the reciprocal of the norm across spatial, else divides.
        y = xr * (1 / norm) if across_spatial else xr / norm
        y = y * _channel_view(scale)
        ctx.dims = dims
        ctx.save_for_backward(xr, scale, norm, y)
        return y

    @staticmethod
    def backward(ctx, g):
        xr, scale, norm, y = ctx.saved_tensors
        gx = (g - xr * (xr * g).sum(dim=ctx.dims, keepdim=True) / norm.square()) / norm
        gx = gx * _channel_view(scale)
        gscale = (y * g).sum(dim=(0, 2)) if scale.dim() else (y * g).sum()
        return gx, gscale / scale, None, None


def _channel_view(scale):
    """The scale broadcast over (N, C, positions): a 0-axis blob is one value."""
    return scale if scale.dim() == 0 else scale[:, None]


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
        return CaffePermute(self.order(layer, shapes[0]))


class CaffePermute(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order = order

    def extra_repr(self):
        return "order=%s" % self.order

    def forward(self, x):
        return x.permute(self.order)


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
        for ar in map(_f32, p.aspect_ratio):
            if all(abs(_f32(ar - r)) >= 1e-6 for r in ratios):
                ratios.append(ar)
                if p.flip:
                    ratios.append(_f32(1.0 / ar))
        sizes = []
        for i, min_size in enumerate(p.min_size):
            # Caffe stores the sizes in ints (truncating) and the box sides in floats; the
            # square root of a float ratio is the float sqrt (golden SSD priors, bit for bit).
            lo = _f32(int(min_size))
            sizes.append((lo, lo))
            if p.max_size:
                side = _f32(math.sqrt(int(min_size) * int(p.max_size[i])))
                sizes.append((side, side))
            for ar in ratios:
                if abs(ar - 1) >= 1e-6:
                    root = _f32(math.sqrt(ar))
                    sizes.append((_f32(lo * root), _f32(lo / root)))
        variance = [_f32(v) for v in p.variance] or [_f32(0.1)]
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
        p = layer.param.prior_box_param
        sizes, variance, image, step = self.geometry(layer)
        return CaffePriorBox(sizes, variance, image, step, p.offset, p.clip)


class CaffePriorBox(nn.Module):
    """forward(feature map, image): only their shapes are read, so the top is a constant
    of the input size, computed with torch where the module runs (and exported as such).
    sizes: (width, height) of each prior, float32 values; variance: 1 or 4 float32 values;
    image and step: (h, w), (0, 0) for the image bottom's size and image / feature map."""

    def __init__(self, sizes, variance, image, step, offset, clip):
        super().__init__()
        # Plain floats, not buffers: Module.half() / .to(dtype) must not round them.
        self.sizes = [(float(w), float(h)) for w, h in sizes]
        self.variance = [float(v) for v in variance]
        self.image, self.step, self.offset, self.clip = tuple(image), tuple(step), offset, clip

    def extra_repr(self):
        return "priors=%d, image=%s, step=%s, offset=%g, clip=%s" % (
            len(self.sizes), self.image, self.step, self.offset, self.clip)

    def forward(self, x, image):
        height, width = _legacy_hw(x)
        img_h, img_w = self.image if self.image[0] and self.image[1] else _legacy_hw(image)
        step_h, step_w = self.step if self.step[0] and self.step[1] else \
            (_f32(img_h / height), _f32(img_w / width))
        # The centres are float arithmetic; the corners are computed in double from them
        # (`center - side / 2.`) and stored as floats.
        offset = torch.tensor(self.offset, dtype=torch.float32, device=x.device)
        cx = ((torch.arange(width, dtype=torch.float32, device=x.device) + offset) * step_w).double()
        cy = ((torch.arange(height, dtype=torch.float32, device=x.device) + offset) * step_h).double()
        cx, cy = cx[None, :, None], cy[:, None, None]
        sides = torch.tensor(self.sizes, dtype=torch.float64, device=x.device) / 2
        half_w, half_h = sides[:, 0], sides[:, 1]
        boxes = torch.stack([((cx - half_w) / img_w).expand(height, width, -1),
                             ((cy - half_h) / img_h).expand(height, width, -1),
                             ((cx + half_w) / img_w).expand(height, width, -1),
                             ((cy + half_h) / img_h).expand(height, width, -1)], dim=-1)
        boxes = boxes.float().reshape(-1)
        if self.clip:
            boxes = boxes.clamp(0, 1)
        variance = torch.tensor(self.variance, dtype=torch.float32, device=x.device)
        variance = variance.repeat(boxes.numel() // len(self.variance))
        return torch.stack([boxes, variance])[None].to(x.dtype)


def _positive(values, what):
    if not all(0 < v < math.inf for v in values):
        raise ShapeError("%s must be positive and finite, got %s"
                         % (what, ", ".join("%g" % v for v in values)))


def _legacy_hw(t):
    return (t.shape[2] if t.dim() > 2 else 1), (t.shape[3] if t.dim() > 3 else 1)


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
        p = self.check(layer, shapes)
        nms = p.nms_param
        return CaffeDetectionOutput(
            p.num_classes, p.share_location, p.background_label_id,
            caffe_pb2.PriorBoxParameter.CodeType.Name(p.code_type),
            p.variance_encoded_in_target, p.keep_top_k,
            p.confidence_threshold if p.HasField("confidence_threshold") else -FLT_MAX,
            nms.nms_threshold, nms.eta, nms.top_k if nms.HasField("top_k") else -1)


def _cmax(a, b):
    """std::max(a, b): a unless a < b (which differs from torch.maximum on NaN)."""
    return torch.where(a < b, b, a)


def _cmin(a, b):
    """std::min(a, b): a unless b < a."""
    return torch.where(b < a, b, a)


class CaffeDetectionOutput(nn.Module):
    """forward(loc, conf, prior[, image]) -> (1, 1, rows, 7). Not differentiable (Caffe has
    no backward for it). code_type: "CORNER", "CENTER_SIZE" or "CORNER_SIZE".
    save_output_param and visualize only write files or draw: the top does not depend on
    them, so they are ignored."""

    def __init__(self, num_classes, share_location, background, code_type, variance_in_target,
                 keep_top_k, confidence_threshold, nms_threshold, eta, top_k):
        super().__init__()
        self.num_classes, self.share_location, self.background = num_classes, share_location, background
        self.code_type, self.variance_in_target = code_type, variance_in_target
        self.keep_top_k, self.confidence_threshold = keep_top_k, confidence_threshold
        self.nms_threshold, self.eta, self.top_k = nms_threshold, eta, top_k

    def extra_repr(self):
        return ("classes=%d, background=%d, share_location=%s, code_type=%s, keep_top_k=%d, "
                "confidence_threshold=%g, nms_threshold=%g, eta=%g, top_k=%d" % (
                    self.num_classes, self.background, self.share_location, self.code_type, self.keep_top_k,
                    self.confidence_threshold, self.nms_threshold, self.eta, self.top_k))

    def forward(self, loc, conf, prior, *image):
        num, dtype = loc.shape[0], loc.dtype
        priors = (prior.shape[2] if prior.dim() > 2 else 1) // 4
        loc_classes = 1 if self.share_location else self.num_classes
        # Caffe reads each bottom as consecutive runs of values per item, in float32.
        loc = loc.detach().float().reshape(-1)[:num * priors * loc_classes * 4]
        conf = conf.detach().float().reshape(-1)[:num * priors * self.num_classes]
        prior = prior.detach().float().reshape(-1)[:priors * 8].reshape(2, priors, 1, 4)
        boxes = self.decode(loc.reshape(num, priors, loc_classes, 4), prior[0], prior[1])
        sizes = _bbox_size(boxes)
        scores = conf.reshape(num, priors, self.num_classes)
        rows = []
        for i in range(num):
            labels, indices = self.detect(boxes[i], sizes[i], scores[i])
            box = boxes[i, indices, 0 if self.share_location else labels]
            rows.append(torch.cat([torch.full_like(box[:, :1], i), labels[:, None].float(),
                                   scores[i, indices, labels][:, None], box], dim=1))
        top = torch.cat(rows)
        if not len(top):
            # No detection anywhere: Caffe gives one row of -1 per image, with its index.
            top = torch.full((num, 7), -1.0, device=loc.device)
            top[:, 0] = torch.arange(num, device=loc.device)
        return top[None, None].to(dtype)

    def decode(self, loc, prior, var):
        """DecodeBBox for every prior (loc (num, priors, loc classes, 4)), float32 and in
        Caffe's order of operations."""
        if not self.variance_in_target:
            loc = var * loc
        if self.code_type == "CORNER":
            return prior + loc
        p_w = prior[..., 2] - prior[..., 0]
        p_h = prior[..., 3] - prior[..., 1]
        if self.code_type == "CORNER_SIZE":
            return prior + loc * torch.stack([p_w, p_h, p_w, p_h], dim=-1)
        # CENTER_SIZE. Caffe's `exp` of a float is glibc's expf, correctly rounded: the
        # double exp rounded to float, which torch's float exp is not always (it made the
        # golden SSD boxes differ in the last bit). The corners are `center - side / 2.`
        # in double, stored as floats.
        c_x = loc[..., 0] * p_w + (prior[..., 0] + prior[..., 2]) / 2
        c_y = loc[..., 1] * p_h + (prior[..., 1] + prior[..., 3]) / 2
        half_w = (loc[..., 2].double().exp().float() * p_w).double() / 2
        half_h = (loc[..., 3].double().exp().float() * p_h).double() / 2
        c_x, c_y = c_x.double(), c_y.double()
        return torch.stack([c_x - half_w, c_y - half_h, c_x + half_w, c_y + half_h], dim=-1).float()

    def detect(self, boxes, sizes, scores):
        """One image: (labels, prior indices) of the kept detections in Caffe's row order."""
        labels, indices = [], []
        for c in range(self.num_classes):
            if c == self.background:
                continue
            loc_class = 0 if self.share_location else c
            kept = self.nms(boxes[:, loc_class], sizes[:, loc_class], scores[:, c])
            labels.append(torch.full_like(kept, c))
            indices.append(kept)
        none = torch.zeros(0, dtype=torch.long, device=boxes.device)
        labels = torch.cat(labels) if labels else none
        indices = torch.cat(indices) if indices else none
        if -1 < self.keep_top_k < len(indices):
            # The best keep_top_k of all classes, then grouped by label (Caffe's map<label,
            # ...>) in score order. Caffe's std::sort leaves the order of equal scores
            # unspecified; a stable sort keeps them by label, then NMS order.
            best = torch.argsort(scores[indices, labels], descending=True, stable=True)[:self.keep_top_k]
            best = best[torch.argsort(labels[best], stable=True)]
            labels, indices = labels[best], indices[best]
        return labels, indices

    def nms(self, boxes, sizes, scores):
        """ApplyNMSFast for one class: the indices kept, best score first."""
        candidates = torch.nonzero(scores > self.confidence_threshold).squeeze(1)
        # stable_sort of (score, index) pairs: equal scores stay in index order.
        candidates = candidates[torch.argsort(scores[candidates], descending=True, stable=True)]
        if self.top_k > -1:
            candidates = candidates[:self.top_k]
        threshold = self.thresholds(len(candidates), boxes.device)
        kept = candidates[:0]
        # Blocks of candidates in score order bound the overlap matrices' memory when no
        # top_k limits the candidates.
        for start in range(0, len(candidates), NMS_BLOCK):
            block = candidates[start:start + NMS_BLOCK]
            b, s = boxes[block], sizes[block]
            # [j, i]: JaccardOverlap(candidate i, kept or earlier candidate j).
            with_kept = _jaccard(b[None, :], s[None, :], boxes[kept][:, None], sizes[kept][:, None])
            within = _jaccard(b[None, :], s[None, :], b[:, None], s[:, None])
            earlier = torch.ones(len(block), len(block), dtype=torch.bool, device=b.device).triu(1)
            # Greedy NMS keeps candidate i when its overlap with every kept earlier
            # candidate is <= the threshold, which (with eta < 1) depends on how many were
            # kept before i. Each keep[i] depends only on keep[:i], so iterating this rule
            # from "keep all" fixes at least one more leading entry per pass, and its fixed
            # point is exactly the greedy result; passes run as deep as the longest chain
            # of suppressions.
            keep = torch.ones(len(block), dtype=torch.bool, device=b.device)
            while True:
                limit = threshold[len(kept) + torch.cumsum(keep, 0) - keep.long()][None, :]
                passes = (with_kept <= limit).all(dim=0) & \
                    ((within <= limit) | ~(earlier & keep[:, None])).all(dim=0)
                if torch.equal(passes, keep):
                    break
                keep = passes
            kept = torch.cat([kept, block[keep]])
        return kept

    def thresholds(self, n, device):
        """The NMS threshold after k boxes were kept, k = 0..n-1: with eta < 1 Caffe
        multiplies it by eta (in float) after each kept box while it is above 0.5."""
        values = [self.nms_threshold]
        while len(values) < n and self.eta < 1 and values[-1] > 0.5:
            values.append(_f32(values[-1] * self.eta))
        values += [values[-1]] * (n - len(values))
        return torch.tensor(values[:n], dtype=torch.float32, device=device)


def _bbox_size(boxes):
    """BBoxSize of normalized boxes: 0 for an inverted box."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    inverted = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    return torch.where(inverted, torch.zeros_like(w), w * h)


def _jaccard(b1, s1, b2, s2):
    """Caffe's JaccardOverlap(bbox1, bbox2) of normalized boxes with their sizes."""
    apart = ((b2[..., 0] > b1[..., 2]) | (b2[..., 2] < b1[..., 0]) |
             (b2[..., 1] > b1[..., 3]) | (b2[..., 3] < b1[..., 1]))
    w = _cmin(b1[..., 2], b2[..., 2]) - _cmax(b1[..., 0], b2[..., 0])
    h = _cmin(b1[..., 3], b2[..., 3]) - _cmax(b1[..., 1], b2[..., 1])
    inter = w * h
    overlap = inter / (s1 + s2 - inter)
    return torch.where(apart | ~((w > 0) & (h > 0)), torch.zeros_like(overlap), overlap)


LAYERS = [Normalize(), Permute(), PriorBox(), DetectionOutput()]

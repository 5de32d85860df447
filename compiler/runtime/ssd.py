"""The modules of the SSD layers (compiler/layers/ssd.py)."""
import torch
import torch.nn as nn

from compiler.layers.arithmetic import f32

NMS_BLOCK = 512


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


class CaffePermute(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order = order

    def extra_repr(self):
        return "order=%s" % self.order

    def forward(self, x):
        return x.permute(self.order)


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
            (f32(img_h / height), f32(img_w / width))
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


def _legacy_hw(t):
    return (t.shape[2] if t.dim() > 2 else 1), (t.shape[3] if t.dim() > 3 else 1)


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
            values.append(f32(values[-1] * self.eta))
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

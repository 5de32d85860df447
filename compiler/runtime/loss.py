"""The modules of the loss layers and Accuracy (compiler/layers/loss.py)."""
import math

import torch
import torch.nn as nn

from compiler.layers.base import prod

LOG_FLT_MIN = math.log(1.1754943508222875e-38)
# Caffe's kLOG_THRESHOLD (loss_layer.hpp): the smallest probability whose log a loss takes.
LOG_THRESHOLD = 1e-20


def normalizer(mode, outer, inner, valid):
    """Caffe's LossLayer divisor: all outer*inner positions (FULL), the positions not
    ignored (VALID, a tensor), the outer count (BATCH_SIZE) or 1 (NONE); at least 1."""
    if mode == "VALID":
        return valid.clamp(min=1)
    return max(1, {"FULL": outer * inner, "BATCH_SIZE": outer, "NONE": 1}[mode])


def _value_with_grad_of(value, surrogate):
    """`value` forward, the gradient of `surrogate` backward (exactly `value`: the
    surrogate's two terms cancel)."""
    return value.detach() + (surrogate - surrogate.detach())


def _labels(label, outer, inner, ignore_label):
    """Caffe's labels as (outer, 1, inner) integers (static_cast<int> truncates), whether
    each counts (ignore_label), and a copy safe to index with (ignored ones set to 0)."""
    label = label.reshape(outer, 1, inner).to(torch.int64)
    keep = label != ignore_label if ignore_label is not None else torch.ones_like(label, dtype=torch.bool)
    return torch.where(keep, label, 0), keep


class CaffeSoftmaxLoss(nn.Module):
    def __init__(self, axis, ignore_label, mode, with_prob):
        super().__init__()
        self.axis, self.ignore_label, self.mode, self.with_prob = axis, ignore_label, mode, with_prob

    def extra_repr(self):
        return "axis=%d, ignore_label=%s, normalization=%s" % (
            self.axis, self.ignore_label, self.mode)

    def forward(self, x, label):
        outer, inner = prod(x.shape[:self.axis]), prod(x.shape[self.axis + 1:])
        logp = torch.log_softmax(x.reshape(outer, x.shape[self.axis], inner), 1)
        label, keep = _labels(label, outer, inner, self.ignore_label)
        picked = logp.gather(1, label)
        # Caffe takes log(max(prob, FLT_MIN)) but backpropagates prob - 1 even where the
        # clamp bit.
        picked = _value_with_grad_of(picked.clamp(min=LOG_FLT_MIN), picked)
        loss = -torch.where(keep, picked, 0).sum() / normalizer(self.mode, outer, inner, keep.sum())
        return (loss, torch.softmax(x, self.axis)) if self.with_prob else loss


class CaffeEuclideanLoss(nn.Module):
    def forward(self, a, b):
        diff = a - b.reshape(a.shape)
        return (diff * diff).sum() / a.shape[0] / 2


class CaffeSigmoidCrossEntropyLoss(nn.Module):
    def __init__(self, ignore_label, mode):
        super().__init__()
        self.ignore_label, self.mode = ignore_label, mode

    def extra_repr(self):
        return "ignore_label=%s, normalization=%s" % (
            self.ignore_label, self.mode)

    def forward(self, x, target):
        target = target.reshape(x.shape).detach()
        positive = (x >= 0).to(x.dtype)
        # -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], without exp of a positive number
        loss = -(x * (target - positive) - torch.log1p(torch.exp(x - 2 * x * positive)))
        if self.ignore_label is not None:
            keep = target.to(torch.int64) != self.ignore_label
            loss = torch.where(keep, loss, 0)
        else:
            keep = torch.ones_like(x, dtype=torch.bool)
        outer = x.shape[0]
        return loss.sum() / normalizer(self.mode, outer, x.numel() // outer, keep.sum())


class CaffeContrastiveLoss(nn.Module):
    def __init__(self, margin, legacy_version):
        super().__init__()
        self.margin, self.legacy_version = margin, legacy_version

    def extra_repr(self):
        return "margin=%g%s" % (self.margin, ", legacy_version" if self.legacy_version else "")

    def forward(self, a, b, similar):
        n = a.shape[0]
        diff = a.reshape(n, -1) - b.reshape(n, -1)
        dist_sq = (diff * diff).sum(1)
        if self.legacy_version:
            # no gradient where margin - dist_sq is exactly 0, as in Caffe (mdist > 0)
            dissimilar = torch.where(self.margin > dist_sq, self.margin - dist_sq, 0)
        else:
            dist = dist_sq.sqrt()
            hinge = (self.margin - dist).clamp(min=0)
            # Caffe's gradient is -2 * hinge / (dist + 1e-4) * diff: the derivative with
            # 1e-4 added to dist (finite at dist 0). dist_sq / 2 has gradient diff.
            scale = (2 * hinge / (dist + 1e-4)).detach()
            dissimilar = _value_with_grad_of(hinge * hinge, -scale * dist_sq / 2)
        similar = similar.reshape(n).to(torch.int64) != 0
        return torch.where(similar, dist_sq, dissimilar).sum() / n / 2


class CaffeHingeLoss(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def extra_repr(self):
        return "norm=%s" % self.norm

    def forward(self, x, label):
        num = x.shape[0]
        x = x.reshape(num, -1)
        # Caffe reads label[i] for item i: the first num values, whatever the label's shape.
        label = label.detach().reshape(-1)[:num].to(torch.int64).unsqueeze(1)
        sign = torch.ones_like(x).scatter(1, label, -1.0)
        # relu's gradient is 0 where the hinge is exactly 0, as Caffe's sign(0) is.
        hinge = torch.relu(1 + sign * x)
        return (hinge.sum() if self.norm == "L1" else (hinge * hinge).sum()) / num


class CaffeMultinomialLogisticLoss(nn.Module):
    def forward(self, prob, label):
        num = prob.shape[0]
        label = label.detach().reshape(num, 1).to(torch.int64)
        picked = prob.reshape(num, -1).gather(1, label)
        clamped = picked.clamp(min=LOG_THRESHOLD).detach()
        # Caffe's value -log(clamped) with its gradient -1 / clamped, also where the clamp
        # bit (clamp's own gradient is 0 there); the second term is 0 and finite forward.
        loss = -torch.log(clamped) - (picked - picked.detach()) / clamped
        return loss.sum() / num


class CaffeInfogainLoss(nn.Module):
    def __init__(self, axis, classes, ignore_label, mode, with_prob, matrix):
        super().__init__()
        self.axis, self.classes, self.ignore_label, self.mode, self.with_prob, self.matrix = (
            axis, classes, ignore_label, mode, with_prob, matrix)
        # H read from infogain_loss_param.source (`matrix`, its values row by row), or None:
        # H is then bottom 3. A constructor argument, not state: Caffe keeps H out of the
        # caffemodel, so the weights files netdef writes hold none, and the module must
        # carry it. The buffer (not in the state_dict) moves with the module.
        self.register_buffer("infogain", None if matrix is None else
                             torch.tensor(matrix, dtype=torch.float32).reshape(classes, classes),
                             persistent=False)

    def extra_repr(self):
        return "axis=%d, classes=%d, ignore_label=%s, normalization=%s" % (
            self.axis, self.classes, self.ignore_label, self.mode)

    def forward(self, x, label, infogain=None):
        h = self.infogain if infogain is None else infogain.detach().reshape(self.classes, self.classes)
        outer, inner = prod(x.shape[:self.axis]), prod(x.shape[self.axis + 1:])
        logp = torch.log_softmax(x.reshape(outer, self.classes, inner), 1)
        # Caffe takes log(max(prob, 1e-20)) but backpropagates p_k sum_j H[l, j] - H[l, k],
        # the unclamped derivative, even where the clamp bit.
        logp = _value_with_grad_of(logp.clamp(min=math.log(LOG_THRESHOLD)), logp)
        label, keep = _labels(label, outer, inner, self.ignore_label)
        rows = h[label[:, 0, :]].transpose(1, 2)          # H[label] as (outer, classes, inner)
        picked = torch.where(keep, (rows * logp).sum(1, keepdim=True), 0)
        loss = -picked.sum() / normalizer(self.mode, outer, inner, keep.sum())
        return (loss, torch.softmax(x, self.axis)) if self.with_prob else loss


class CaffeAccuracy(nn.Module):
    def __init__(self, axis, top_k, ignore_label, per_class):
        super().__init__()
        self.axis, self.top_k, self.ignore_label, self.per_class = axis, top_k, ignore_label, per_class

    def extra_repr(self):
        return "axis=%d, top_k=%d, ignore_label=%s" % (self.axis, self.top_k, self.ignore_label)

    def forward(self, x, label):
        classes = x.shape[self.axis]
        outer, inner = prod(x.shape[:self.axis]), prod(x.shape[self.axis + 1:])
        scores = x.detach().reshape(outer, classes, inner)
        label, keep = _labels(label, outer, inner, self.ignore_label)
        # Caffe counts the classes scoring at least the true class's score, itself
        # excluded; the label is a hit when fewer than top_k do.
        better = (scores >= scores.gather(1, label)).sum(1, keepdim=True) - 1
        hit = keep & (better < self.top_k)
        counted = keep.sum()
        accuracy = torch.where(counted > 0, hit.sum() / counted.clamp(min=1), 0).to(x.dtype)
        if not self.per_class:
            return accuracy
        total = torch.bincount(label[keep], minlength=classes)
        hits = torch.bincount(label[hit], minlength=classes)
        return accuracy, torch.where(total > 0, hits / total.clamp(min=1), 0).to(x.dtype)

"""Loss layers (SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, ContrastiveLoss,
HingeLoss, MultinomialLogisticLoss, InfogainLoss) and Accuracy.

A loss top is a 0-axis blob (Caffe's LossLayer::Reshape), and the net's loss is the sum
of every top times its loss weight: `loss_weight(layer)` gives them as Caffe does.
Gradients come from autograd. Where Caffe's hand-written backward is not the derivative
of its forward (the FLT_MIN clamp of SoftmaxWithLoss, ContrastiveLoss's 1e-4), the module
computes Caffe's value and routes Caffe's gradient (compiler/runtime/loss.py). Labels get no
gradient: Caffe refuses to backpropagate to them.
"""
from compiler.errors import NetdefError
from compiler.files import regular_file
from compiler.layers import registry
from compiler.layers.base import LayerDef, ShapeError, canonical_axis, prod
from compiler.proto import caffe_pb2


def loss_weight(layer):
    """The weight of each top of `layer` in the net's loss (Caffe's Layer::SetLossWeights):
    the layer's loss_weight values, one per top; without them 1 for the first top of a
    loss layer and 0 for every other top. A wired layer counts its automatic top too."""
    weights = list(layer.param.loss_weight)
    if weights:
        return weights
    tops = len(layer.tops) or len(layer.param.top)
    first = 1.0 if isinstance(registry.get(layer.type), LossLayer) else 0.0
    return [first] + [0.0] * (tops - 1) if tops else []


def normalization(p, default):
    """LossParameter's normalization by name ("FULL", "VALID", "BATCH_SIZE", "NONE"); the
    legacy `normalize: true/false` means VALID / BATCH_SIZE when normalization is not given."""
    if p.HasField("normalization"):
        return caffe_pb2.LossParameter.NormalizationMode.Name(p.normalization)
    if p.HasField("normalize"):
        return "VALID" if p.normalize else "BATCH_SIZE"
    return default


class LossLayer(LayerDef):
    """Caffe's LossLayer: two bottoms with the same first axis, a 0-axis top (which Caffe
    adds when the layer lists none: the loss counts whether or not anyone names it)."""
    param_field = "loss_param"
    bottoms = (2, 2)
    auto_top = True

    def check(self, layer, shapes):
        if not shapes[0] or not shapes[1] or shapes[0][0] != shapes[1][0]:
            raise ShapeError("the data and label should have the same first dimension (%s vs %s)"
                             % (list(shapes[0][:1]), list(shapes[1][:1])))
        # The wired tops: Caffe checks the loss weights after AutoTopBlobs added a top.
        weights, tops = list(layer.param.loss_weight), len(layer.tops)
        if weights and len(weights) != tops:
            raise ShapeError("%d loss_weight values for %d tops" % (len(weights), tops),
                             "give one loss_weight per top")
        if not weights and tops > 1:
            # Caffe gives a loss layer one default weight, which then fits one top only.
            raise ShapeError("a loss layer with %d tops needs one loss_weight per top" % tops,
                             "add loss_weight: 1 %s(the loss, then no loss from the other tops)"
                             % ("loss_weight: 0 " * (tops - 1)))

    def ignore_label(self, layer):
        p = layer.param.loss_param
        return p.ignore_label if p.HasField("ignore_label") else None


def class_axis(data, label, axis, what):
    """The canonical class axis of `data` for a layer that reads one label per position of
    the other axes (a softmax loss, InfogainLoss, Accuracy: Caffe's check that outer_num_ x
    inner_num_ is the label count)."""
    axis = canonical_axis(axis, len(data))
    outer, inner = prod(data[:axis]), prod(data[axis + 1:])
    if outer * inner != prod(label):
        raise ShapeError("%d labels for %d predictions" % (prod(label), outer * inner),
                         "the label needs one value per position of the %s axis %d: %d "
                         "values, integers in 0..%d" % (what, axis, outer * inner, data[axis] - 1))
    return axis


class SoftmaxWithLoss(LossLayer):
    """-log softmax(x)[label] summed over the positions not ignored, divided as
    `normalization` says (default VALID). A second top gives the softmax itself (BVLC
    master crashes on a second top, BVLC/caffe#2968; netdef does what the forks that
    fixed it do)."""
    type = "SoftmaxWithLoss"
    dsl_name = "softmax_loss"
    tops = (1, 2)

    def axis(self, layer, shapes):
        self.check(layer, shapes)
        data, label = shapes
        return class_axis(data, label, layer.param.softmax_param.axis, "softmax")

    def shape(self, layer, shapes):
        self.axis(layer, shapes)
        return [()] + [tuple(shapes[0])] * (len(layer.param.top) - 1)

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeSoftmaxLoss
        return CaffeSoftmaxLoss(self.axis(layer, shapes), self.ignore_label(layer),
                                normalization(layer.param.loss_param, "VALID"), len(layer.param.top) == 2)


class EuclideanLoss(LossLayer):
    """sum((a - b)^2) / N / 2; both bottoms get a gradient."""
    type = "EuclideanLoss"

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        if prod(shapes[0][1:]) != prod(shapes[1][1:]):
            raise ShapeError("the bottoms must have the same number of values per item (%d vs %d)"
                             % (prod(shapes[0][1:]), prod(shapes[1][1:])))
        return [()]

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeEuclideanLoss
        return CaffeEuclideanLoss()


class SigmoidCrossEntropyLoss(LossLayer):
    """Cross-entropy of sigmoid(x) against targets in [0, 1], in Caffe's overflow-free
    form, divided as `normalization` says (default BATCH_SIZE for this layer)."""
    type = "SigmoidCrossEntropyLoss"

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        if prod(shapes[0]) != prod(shapes[1]):
            raise ShapeError("the bottoms must have the same count (%d vs %d)"
                             % (prod(shapes[0]), prod(shapes[1])),
                             "give one target per prediction")
        return [()]

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeSigmoidCrossEntropyLoss
        return CaffeSigmoidCrossEntropyLoss(self.ignore_label(layer),
                                            normalization(layer.param.loss_param, "BATCH_SIZE"))


class ContrastiveLoss(LossLayer):
    """Siamese loss over (a, b, similar): d^2 for similar pairs, max(margin - d, 0)^2 for
    the others (legacy_version: max(margin - d^2, 0)), summed and divided by 2N."""
    type = "ContrastiveLoss"
    param_field = "contrastive_loss_param"
    bottoms = (3, 3)

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        a, b, similar = (_legacy_4d(s, self.type) for s in shapes)
        if a[1] != b[1] or a[2:] != (1, 1) or b[2:] != (1, 1):
            raise ShapeError("ContrastiveLoss needs two (N, C) feature bottoms with the same C, got "
                             "%s and %s" % (list(shapes[0]), list(shapes[1])),
                             "Flatten or Reshape them to (N, C)")
        if similar[1:] != (1, 1, 1) or similar[0] != a[0]:
            raise ShapeError("the third bottom must hold one similarity label per pair (%d), got %s"
                             % (a[0], list(shapes[2])))
        return [()]

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeContrastiveLoss
        p = layer.param.contrastive_loss_param
        return CaffeContrastiveLoss(p.margin, p.legacy_version)


def _legacy_4d(shape, type_name):
    """Caffe's num/channels/height/width view of a blob of at most 4 axes (Blob::LegacyShape,
    which CHECK-fails on more: the layers that read num() or channels() refuse them)."""
    if len(shape) > 4:
        raise ShapeError("%s takes blobs of at most 4 axes, got %s" % (type_name, list(shape)))
    return tuple(shape) + (1,) * (4 - len(shape))


class HingeLoss(LossLayer):
    """Caffe's one-versus-all hinge loss. Each of the N items (N = the first axis) has the
    scores x_j, all its values after axis 0; the label's column gets its sign flipped
    (t_j = -1 there, 1 elsewhere) and the loss is
    sum_ij max(0, 1 + t_j x_ij) (norm L1, the default) or the sum of its squares (L2),
    divided by N. The labels are the first N values of the label blob, truncated to
    integers (Caffe reads label[i]). Caffe reads no loss_param here: no ignore_label, no
    normalization. Its gradient is autograd's: t_j / N where the hinge is positive and 0
    where it is not (L1), 2 t_j max(0, 1 + t_j x_ij) / N (L2)."""
    type = "HingeLoss"
    param_field = "hinge_loss_param"

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        _legacy_4d(shapes[0], self.type)            # Caffe's bottom[0]->num()
        return [()]

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeHingeLoss
        return CaffeHingeLoss(caffe_pb2.HingeLossParameter.Norm.Name(layer.param.hinge_loss_param.norm))


class MultinomialLogisticLoss(LossLayer):
    """-log(max(p_i[label_i], 1e-20)) summed over the N items (the first axis) and divided
    by N, where bottom 0 holds probabilities (a Softmax's top; each item's values after
    axis 0 are its classes) and the label one integer per item, (N,) or (N, 1, 1, 1).
    kLOG_THRESHOLD, 1e-20, keeps a zero probability's loss finite; Caffe's gradient,
    -1 / (N max(p, 1e-20)) at the label and 0 elsewhere, is kept where the clamp bites
    too. Caffe reads no loss_param here: no ignore_label, always divided by N."""
    type = "MultinomialLogisticLoss"
    param_field = None

    def shape(self, layer, shapes):
        self.check(layer, shapes)
        _legacy_4d(shapes[0], self.type)            # Caffe's bottom[0]->num()
        if _legacy_4d(shapes[1], self.type)[1:] != (1, 1, 1):
            raise ShapeError("the label must hold one value per item, got %s" % list(shapes[1]),
                             "give the label the shape (%d,) or (%d, 1, 1, 1)" % (shapes[0][0], shapes[0][0]))
        return [()]

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeMultinomialLogisticLoss
        return CaffeMultinomialLogisticLoss()


class InfogainLoss(LossLayer):
    """BVLC master's InfogainLoss (since its commit 337b075): bottom 0 holds scores, to which it
    applies a softmax over infogain_loss_param.axis itself (older Caffe took
    probabilities), and the loss at each position with label l is
    -sum_k H[l, k] log(max(p_k, 1e-20)), summed over the positions whose label is not
    loss_param.ignore_label and divided as `normalization` says (default VALID; the
    deprecated `normalize` is refused, as Caffe refuses it). H, the K x K infogain matrix
    for the K classes of the axis, is the third bottom when there is one, else the
    BlobProto in infogain_loss_param.source (relative to the working directory, as Caffe
    opens it); Caffe keeps it out of the caffemodel, so the module holds its values.
    Caffe's gradient, (p_k sum_j H[l, j] - H[l, k]) / normalizer, is the derivative of the
    unclamped loss, kept where the clamp bites. Neither the label nor H gets a gradient.
    A second top gives the softmax."""
    type = "InfogainLoss"
    param_field = "infogain_loss_param"
    bottoms = (2, 3)
    tops = (1, 2)

    def axis(self, layer, shapes):
        self.check(layer, shapes)
        if layer.param.loss_param.HasField("normalize"):
            raise ShapeError("InfogainLoss refuses loss_param.normalize (deprecated, as Caffe says)",
                             "write normalization: VALID for normalize: true, BATCH_SIZE for false")
        data, label = shapes[:2]
        axis = class_axis(data, label, layer.param.infogain_loss_param.axis, "infogain")
        classes = data[axis]
        if len(shapes) == 3 and prod(shapes[2]) != classes * classes:
            raise ShapeError("the infogain matrix (bottom 3) has %d values; the %d classes of axis %d "
                             "need %dx%d" % (prod(shapes[2]), classes, axis, classes, classes))
        if len(shapes) == 2:
            self.infogain(layer, classes)
        return axis

    def infogain(self, layer, classes):
        """The values of H read from infogain_loss_param.source, as Caffe's Blob::FromProto
        reads a BlobProto (the legacy num/channels/height/width when one is set, else
        `shape`; double_data when present, else data)."""
        p = layer.param.infogain_loss_param
        if not p.HasField("source"):
            raise ShapeError("InfogainLoss with two bottoms needs infogain_loss_param.source",
                             "give the infogain matrix as a .binaryproto file in source, or as a third bottom")
        hint = "the source path is relative to the working directory, as in Caffe"
        try:
            regular_file(p.source, "infogain matrix '%s'" % p.source)
            blob = caffe_pb2.BlobProto()
            with open(p.source, "rb") as f:
                blob.ParseFromString(f.read())
        except NetdefError as e:
            raise ShapeError(e.message, hint) from None
        except Exception as e:       # protobuf's DecodeError and OSError alike: not a BlobProto
            raise ShapeError("cannot read the infogain matrix '%s': %s" % (p.source, e), hint) from None
        legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
        dims = [blob.num, blob.channels, blob.height, blob.width] if legacy else list(blob.shape.dim)
        values = list(blob.double_data) or list(blob.data)
        if len(values) != prod(dims):
            raise ShapeError("the infogain matrix '%s' has shape %s but %d values" % (p.source, dims, len(values)))
        if len(values) != classes * classes:
            raise ShapeError("the infogain matrix '%s' has %d values; the %d classes need %dx%d"
                             % (p.source, len(values), classes, classes, classes))
        return values

    def shape(self, layer, shapes):
        self.axis(layer, shapes)
        return [()] + [tuple(shapes[0])] * (len(layer.param.top) - 1)

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeInfogainLoss
        axis = self.axis(layer, shapes)
        classes = shapes[0][axis]
        return CaffeInfogainLoss(axis, classes, self.ignore_label(layer),
                                 normalization(layer.param.loss_param, "VALID"), len(layer.param.top) == 2,
                                 tuple(self.infogain(layer, classes)) if len(shapes) == 2 else None)


class Accuracy(LayerDef):
    """The fraction of positions whose label is among the top_k scores (ties count
    against it), skipping ignore_label; a second top gives the accuracy per class."""
    type = "Accuracy"
    param_field = "accuracy_param"
    dsl_name = "accuracy"
    bottoms = (2, 2)
    tops = (1, 2)

    def axis(self, layer, shapes):
        p = layer.param.accuracy_param
        data, label = shapes
        if p.top_k > prod(data) // prod(label):
            raise ShapeError("top_k %d is more than the %d classes" % (p.top_k, prod(data) // prod(label)),
                             "use a top_k of at most %d" % (prod(data) // prod(label)))
        return class_axis(data, label, p.axis, "accuracy")

    def shape(self, layer, shapes):
        axis = self.axis(layer, shapes)
        return [()] + [(shapes[0][axis],)] * (len(layer.param.top) - 1)

    def lower(self, layer, shapes):
        from compiler.runtime.loss import CaffeAccuracy
        p = layer.param.accuracy_param
        return CaffeAccuracy(self.axis(layer, shapes), p.top_k,
                             p.ignore_label if p.HasField("ignore_label") else None,
                             len(layer.param.top) == 2)


LAYERS = [SoftmaxWithLoss(), EuclideanLoss(), SigmoidCrossEntropyLoss(), ContrastiveLoss(), HingeLoss(),
          MultinomialLogisticLoss(), InfogainLoss(), Accuracy()]

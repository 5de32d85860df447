"""Scoring a net with test-time crops and ensembles (`netdef test --crops 10 --ensemble W2`),
so that what they gain in accuracy, and cost in time, can be measured as caffe test
measures a single net.

The net's main loss (netdef deploy's choice: the largest loss_weight) must be a
SoftmaxWithLoss: its first bottom holds the class scores. Each member (the net with its
weights, other weights of it, or another net reading the same inputs) computes the scores
of each crop; their softmax probabilities P are averaged over crops and members, as
netdef predict averages them. The losses and accuracies that read the scores then run on
log P, in a net of their own (`scoring_net`): SoftmaxWithLoss of log P is -log P[label]
(softmax(log P) = P) and Accuracy ranks log P as it ranks P, so one member on one crop
scores exactly as caffe test does (its loss and accuracy are those of softmax(scores)),
and several score their averaged prediction. The net's other outputs (GoogLeNet's
auxiliary losses) are not scored.

Crops: the data layers with a transform_param are read uncropped (crop_size 0, no
mirror; the mean is subtracted at the uncropped pixel, as Caffe indexes a mean file, and
the scale applied) and each batch is cut into the ten crops of `ten_crops` (corners,
centre, and their mirrors), each fed to the members as the batch the net was shaped for.
Without --crops 10 the data layers read as they always do (the centre crop in TEST).
"""
import copy

import numpy as np
import torch

from compiler import pipeline
from compiler.errors import NetdefError
from compiler.ir import Net
from compiler.layers.loss import Accuracy, LossLayer, SoftmaxWithLoss
from compiler.proto import caffe_pb2
from netdef.data.sources import SOURCES
from netdef.devices import autocast, place, place_inputs
from netdef.inference.deploy import deploy_net, main_loss
from netdef.inference.predict import ensemble, ten_crops


def scoring_layers(net):
    """(the SSA id of the class scores, [the losses and accuracies that read them]) of a
    wired net whose main loss is a SoftmaxWithLoss. Each of them may read, besides the
    scores, only the net's inputs (the label): they are run apart from the net."""
    main = main_loss(net)
    if main is None or not isinstance(main.defn, SoftmaxWithLoss):
        raise NetdefError(net.file, main.line if main else None, main.name if main else None,
                          "test-time crops and ensembles average class probabilities: the net's main loss "
                          "must be a SoftmaxWithLoss%s" % ("" if main else " (it has no loss)"),
                          "score a classifier's train_val net")
    scores = main.bottoms[0]
    layers = [l for l in net.layers if scores in l.bottoms and isinstance(l.defn, (LossLayer, Accuracy))]
    for layer in layers:
        other = [net.blobs[b].name for b in layer.bottoms if b != scores and b not in net.inputs]
        if other:
            raise NetdefError(layer.file, layer.line, layer.name, "this layer reads %s besides the class scores; "
                              "averaged scoring feeds it only the scores and the net's inputs" % ", ".join(other))
    return scores, layers


def scoring_net(net, scores, layers):
    """The losses and accuracies `layers` as a net of their own: an Input per blob they
    read (the scores, the label), shaped as in `net`."""
    from google.protobuf import text_format
    from compiler.frontends import prototxt
    from compiler.state import NetState
    proto = caffe_pb2.NetParameter(name=net.name)
    read = list(dict.fromkeys(b for layer in layers for b in (scores,) + layer.bottoms))
    for blob in read:
        name = net.blobs[blob].name
        proto.layer.add(name=name, type="Input", top=[name]).input_param.shape.add().dim.extend(net.blobs[blob].shape)
    for layer in layers:
        param = proto.layer.add()
        param.CopyFrom(layer.param)
        del param.include[:]
        del param.exclude[:]
        del param.blobs[:]
    text = text_format.MessageToString(proto)
    return pipeline.build_net(prototxt.load_net(net.file, text=text), NetState("TEST"))


def uncropped(net, state, input_shapes):
    """(the net with its data layers reading whole images, {image top: crop size}): the
    crop and mirror of each data layer's transform_param removed."""
    layers = [copy.deepcopy(layer) for layer in net.layers]
    crops = {}
    for layer in layers:
        param = layer.param
        if layer.type in SOURCES and param.HasField("transform_param"):
            crops[net.blobs[layer.tops[0]].name] = param.transform_param.crop_size
            param.transform_param.crop_size = 0
            param.transform_param.mirror = False
            layer.param = param
    return pipeline.build_net(Net(net.name, layers, file=net.file), state, input_shapes), crops


class Member:
    """One ensemble member: its deploy net's module (netdef deploy: the layers the class
    probabilities need, a Softmax where the main loss was), called on a batch {input blob
    name: tensor}."""

    def __init__(self, net, weights, source, strict, device, channels_last):
        import netdef
        scoring_layers(net)         # a member must be a classifier too: refused as the net would be
        predicting = deploy_net(net)
        (self.blob,), self.source = predicting.outputs, source
        self.gm = netdef.compile_net(predicting, weights, outputs=[self.blob], strict=strict)
        place(self.gm, device, channels_last)
        self.inputs = netdef.record(self.gm).input_names

    def __call__(self, batch):
        missing = [n for n in self.inputs if n not in batch]
        if missing:
            raise NetdefError(str(self.source), None, None, "this ensemble member reads %s, which the scored "
                              "net does not give" % ", ".join(missing),
                              "ensemble members read the same inputs as the net")
        return self.gm(*[batch[n] for n in self.inputs])


class AveragedScoring:
    """The scoring net and the batches that feed it: each batch of the net's inputs
    becomes {scores: log of the probabilities averaged over crops and members, and the
    inputs the losses and accuracies read}."""

    def __init__(self, net, crops, device, precision="fp32", channels_last=False):
        scores, layers = scoring_layers(net)
        self.scores, self.shape = net.blobs[scores].name, tuple(net.blobs[scores].shape)
        self.net = scoring_net(net, scores, layers)
        self.crops, self.device, self.precision, self.channels_last = crops, device, precision, channels_last
        self.members = []

    def add(self, net, weights, source, strict=False):
        self.members.append(Member(net, weights, source, strict, self.device, self.channels_last))

    def batches(self, batches, crop_sizes):
        """The scoring net's batches from the members' (`batches`: whole images where
        crop_sizes {image top: crop size} says so, with --crops 10)."""
        members = [(m, m.blob, False, m.source) for m in self.members]
        for batch in batches:
            views = [batch]
            if self.crops == 10:
                cut = {top: ten_crops(np.asarray(batch[top]), size) for top, size in crop_sizes.items()}
                views = [dict(batch, **{top: c[k] for top, c in cut.items()}) for k in range(10)]
            total = 0
            for view in views:
                with autocast(self.device, self.precision):
                    total = total + ensemble(members, place_inputs(view, self.device, self.channels_last))
            probs = total / len(views)
            yield dict(batch, **{self.scores: torch.log(probs).reshape(self.shape)})

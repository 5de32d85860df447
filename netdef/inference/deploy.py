"""A train_val net -> the deploy net Caffe users write by hand for it.

Caffe's model zoo ships each net twice: train_val.prototxt (data layers, losses,
accuracies, both phases) and deploy.prototxt (an Input of the data's shape, the same
layers, a Softmax "prob" where the loss was). `deploy` makes the second from the first:
- the TEST net is taken (a deploy net runs as Caffe's TEST: Dropout off, stored BatchNorm
  statistics), its include/exclude rules dropped;
- each data layer becomes an Input layer per top that the kept layers read (the label
  goes), shaped as the data (batch `batch` when given), keeping the data layer's
  transform_param, which Caffe ignores on an Input and netdef predict reads as the net's
  preprocessing;
- loss and accuracy layers go; the main loss (the largest loss_weight, the last of
  equals) is replaced by its prediction: a Softmax named "prob" where it was a
  SoftmaxWithLoss (its softmax_param axis kept), its first bottom otherwise;
- layers no remaining output needs go with them (GoogLeNet's auxiliary classifiers).
"""
from compiler.errors import NetdefError
from compiler.layers.loss import Accuracy, LossLayer, SoftmaxWithLoss, loss_weight
from compiler.proto import caffe_pb2

PROB = "prob"


def deploy(net, batch=None):
    """net: a wired, shaped TEST net. -> caffe_pb2.NetParameter of its deploy net."""
    removed = [l for l in net.layers if isinstance(l.defn, (LossLayer, Accuracy))]
    main = main_loss(net)
    if main is None:
        raise NetdefError(net.file, None, None, "the net has no loss layer: it is a deploy net already",
                          "deploy turns a train_val net (data, losses) into the net that predicts")
    prediction = main.bottoms[0]
    softmax = None
    if isinstance(main.defn, SoftmaxWithLoss):
        taken = {l.name for l in net.layers} | set(net.blob_order)
        name = PROB if PROB not in taken else PROB + "_" + main.name
        softmax = caffe_pb2.LayerParameter(name=name, type="Softmax", bottom=[net.blobs[prediction].name],
                                           top=[name])
        if main.param.softmax_param.ListFields():
            softmax.softmax_param.CopyFrom(main.param.softmax_param)
    gone = {id(l) for l in removed}
    kept_outputs = {prediction} | {net.latest[o] for o in net.outputs
                                   if id(net.layer(net.blobs[net.latest[o]].producer)) not in gone}
    needed = _needed_layers(net, kept_outputs, gone)
    proto = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layers:
        if id(layer) not in needed:
            continue
        if layer.defn.is_input:
            _add_inputs(proto, net, layer, needed[id(layer)], batch)
            continue
        param = proto.layer.add()
        param.CopyFrom(layer.param)
        del param.include[:]
        del param.exclude[:]
        del param.blobs[:]
    if softmax is not None:
        proto.layer.add().CopyFrom(softmax)
    return proto


def deploy_net(net):
    """The deploy net of a wired, shaped TEST net, wired and shaped: the net that predicts."""
    from google.protobuf import text_format
    from compiler import pipeline
    from compiler.frontends import prototxt
    from compiler.state import NetState
    return pipeline.build_net(prototxt.load_net(net.file, text=text_format.MessageToString(deploy(net))),
                              NetState("TEST"))


def main_loss(net):
    """The net's main loss layer: the largest loss_weight, the last of equals (None without
    losses). Its first bottom is what the net predicts."""
    losses = [l for l in net.layers if isinstance(l.defn, LossLayer)]
    return max(reversed(losses), key=lambda l: sum(loss_weight(l))) if losses else None


def _needed_layers(net, outputs, gone):
    """{id(layer): set of its tops that are read} for the layers the SSA ids `outputs` need."""
    needed, todo = {}, list(outputs)
    seen = set()
    while todo:
        blob = todo.pop()
        if blob in seen:
            continue
        seen.add(blob)
        layer = net.layer(net.blobs[blob].producer)
        if id(layer) in gone:
            continue
        needed.setdefault(id(layer), set()).add(blob)
        todo.extend(layer.bottoms)
    return needed


def _add_inputs(proto, net, layer, read, batch):
    """One Input layer per top of the data layer that the deploy net reads."""
    for top in layer.tops:
        if top not in read:
            continue
        blob = net.blobs[top]
        shape = list(blob.shape)
        if batch is not None and shape:
            shape[0] = batch
        param = proto.layer.add(name=blob.name, type="Input", top=[blob.name])
        param.input_param.shape.add().dim.extend(shape)
        if layer.param.HasField("transform_param"):
            param.transform_param.CopyFrom(layer.param.transform_param)

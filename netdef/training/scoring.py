"""Scoring a net over batches, as `caffe test` and Solver::Test do: run N forward passes,
add up every element of every output blob, divide by N.

Batches come from any iterator of {input blob name: array or tensor}, one dict per forward
pass: arrays from an .npz (`array_batches`), or a data layer's reader. A net without inputs
takes empty dicts.
"""
from dataclasses import dataclass

import torch

from compiler.layers.loss import loss_weight
from netdef.devices import autocast, place_inputs


def loss_weights(net):
    """{Caffe blob name: weight} of every top with a non-zero weight in the net's loss
    (Caffe's blob_loss_weights): the net's loss is the sum of weight x each such top."""
    weights = {}
    for layer in net.layers:
        for top, weight in zip(layer.tops, loss_weight(layer)):
            if weight:
                weights[net.blobs[top].name] = weight
    return weights


def outputs_with_losses(net):
    """The blobs a module must return to be scored or timed: the net's outputs, then every
    weighted loss top that another layer reads (Net::Forward's loss counts those too)."""
    return net.outputs + [b for b in loss_weights(net) if b not in net.outputs]


def array_batches(arrays):
    """{name: array of shape [batches, ...]} -> iterator of {name: entry j} for j = 0, 1, ...
    (entry j along the first axis is the batch of forward pass j, as `--feed` has it)."""
    count = min((len(a) for a in arrays.values()), default=0)
    for j in range(count):
        yield {name: a[j] for name, a in arrays.items()}


@dataclass
class Scores:
    outputs: list          # [(blob name, mean values as a flat list, loss weight)] in output order
    loss: float            # mean over the passes of the net's loss (sum of weight x loss top)


def score(gm, net, batches, iterations, device, precision="fp32", channels_last=False, on_batch=None):
    """Mean of every output of `gm` over `iterations` forward passes fed from `batches`.

    gm must return outputs_with_losses(net), so that the loss is Caffe's.
    on_batch(i, [(name, flat values)]) sees each pass's outputs, for caffe test's
    `Batch i, name = value` lines. Runs under torch.no_grad(); the module keeps whichever
    train/eval mode it is in (the phase it was built for)."""
    import netdef
    input_names = netdef.record(gm).input_names
    weights = loss_weights(net)
    sums, loss = None, 0.0
    batches = iter(batches)
    with torch.no_grad():
        for i in range(iterations):
            inputs = place_inputs(next(batches), device, channels_last)
            with autocast(device, precision):
                # Positionally: a blob name need not be a Python identifier ("input.1").
                out = gm(*[inputs[n] for n in input_names])
            loss += float(sum(w * out[name].float().sum() for name, w in weights.items()))
            values = [(name, out[name].detach().float().reshape(-1)) for name in net.outputs]
            if on_batch is not None:
                on_batch(i, [(name, v.tolist()) for name, v in values])
            sums = [v.clone() for _, v in values] if sums is None else \
                [s.add_(v) for s, (_, v) in zip(sums, values)]
    means = [(s / iterations).tolist() for s in sums or []]
    return Scores([(name, m, weights.get(name, 0)) for name, m in zip(net.outputs, means)],
                  loss / iterations)

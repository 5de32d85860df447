"""The inference fast path: fold BatchNorm and Scale into the Convolution before them and
store 4-D weights channels_last. It transforms a net and the module built from it, so it
is a backend. (In-place ReLUs and sums are not its work: every module the backend builds
has them, see fast_path.)

In inference a BatchNorm that uses its stored statistics and a per-channel Scale are affine
maps per output channel, so conv -> BatchNorm [-> Scale] equals one convolution with
rescaled weights and a new bias. That removes two full passes over every activation of a
ResNet. A chain folds only when nothing else can see the values in between: each
intermediate value is read by the next layer of the chain alone and is not an output the
module returns, and no layer of it shares parameters (param { name }) with another layer.

It rewrites the IR (the convolution gains a bias and takes over the top of the last folded
layer; BatchNorm and Scale are removed), checks the new net through the pipeline, builds
its module and loads the folded weights. The result is again a net Caffe can run: exporting it writes a valid,
smaller prototxt and caffemodel. Outputs keep their Caffe blob names.
"""
import warnings

import numpy as np
import torch

from compiler import pipeline
from compiler.backends import torch_fx, torch_weights
from compiler.backends.record import record_of
from compiler.errors import NetdefWarning
from compiler.ir import Layer, LayerBlobs, Net
from compiler.layers.conv import Convolution
from compiler.layers.normalization import BatchNorm
from compiler.layers.scale_bias import Scale


def _shares_params(layer):
    return any(spec.name for spec in layer.param.param)


def find_chains(net, outputs):
    """[(conv, batchnorm or None, scale or None)] that can be folded. `outputs`: the Caffe
    blob names the module returns."""
    readers = {}
    for layer in net.layers:
        for b in layer.bottoms:
            readers.setdefault(b, []).append(layer)
    returned = {net.latest[name] for name in outputs}

    def sole_reader(layer):
        """The one layer reading `layer`'s single top, if its value is seen by nothing else."""
        if len(layer.tops) != 1 or layer.tops[0] in returned:
            return None
        users = readers.get(layer.tops[0], [])
        return users[0] if len(users) == 1 and len(users[0].bottoms) == 1 else None

    # The rewrite below knows layers by name: a layer whose name another has stays as it is.
    named_twice = set(net.duplicate_names)
    chains = []
    for conv in net.layers:
        if not isinstance(conv.defn, Convolution) or _shares_params(conv) or conv.name in named_twice:
            continue
        bn = scale = None
        nxt = sole_reader(conv)
        # The built-in definitions only: a user's registered replacement computes its own thing.
        if nxt is not None and nxt.name in named_twice:
            nxt = None
        if nxt is not None and isinstance(nxt.defn, BatchNorm) and not _shares_params(nxt) \
                and nxt.defn.uses_global_stats(nxt, net.phase):
            bn = nxt
            nxt = sole_reader(bn)
            if nxt is not None and nxt.name in named_twice:
                nxt = None
        if nxt is not None and isinstance(nxt.defn, Scale) and not _shares_params(nxt) \
                and nxt.defn.per_channel(nxt, [net.blobs[nxt.bottoms[0]].shape]):
            scale = nxt
        if bn is not None or scale is not None:
            chains.append((conv, bn, scale))
    return chains


def _folded_blobs(conv_blobs, bn_blobs, scale_blobs, bn_eps):
    """Weight and bias of the one convolution computing conv -> BatchNorm -> Scale. The
    arithmetic is float64 so that folding adds no more than float32 rounding of the result."""
    w = conv_blobs[0].astype(np.float64)
    c = w.shape[0]
    b = conv_blobs[1].astype(np.float64) if len(conv_blobs) > 1 else np.zeros(c)
    mul, add = np.ones(c), np.zeros(c)
    if bn_blobs is not None:
        # Caffe stores running sums: mean and variance are blob / factor (0 if factor is 0).
        factor = float(bn_blobs[2].reshape(-1)[0])
        inv = 0.0 if factor == 0 else 1.0 / factor
        mean = bn_blobs[0].astype(np.float64).reshape(c) * inv
        var = bn_blobs[1].astype(np.float64).reshape(c) * inv
        mul = 1.0 / np.sqrt(var + bn_eps)
        add = -mean * mul
    if scale_blobs is not None:
        gamma = scale_blobs[0].astype(np.float64).reshape(c)
        beta = scale_blobs[1].astype(np.float64).reshape(c) if len(scale_blobs) > 1 else np.zeros(c)
        mul, add = mul * gamma, add * gamma + beta
    w = w * mul.reshape((c,) + (1,) * (w.ndim - 1))
    b = b * mul + add
    return [w.astype(np.float32), b.astype(np.float32)]


def fold_batchnorm(net, gm):
    """-> (net, gm) with every foldable chain folded. The inputs are left as they were."""
    outputs = record_of(gm).output_names
    chains = find_chains(net, outputs)
    if not chains:
        return net, gm
    blobs = torch_weights.module_blobs(net, gm)
    removed, replaced = set(), {}
    for conv, bn, scale in chains:
        last = scale or bn
        param = type(conv.param)()
        param.CopyFrom(conv.param)
        param.convolution_param.bias_term = True
        del param.top[:]
        param.top.extend(last.param.top)
        replaced[conv.name] = Layer(conv.name, conv.type, param, conv.line, conv.file)
        blobs[conv.name] = _folded_blobs(blobs[conv.name], bn and blobs[bn.name],
                                         scale and blobs[scale.name],
                                         bn.param.batch_norm_param.eps if bn else 0.0)
        for layer in (bn, scale):
            if layer is not None:
                removed.add(layer.name)
                blobs.pop(layer.name, None)
    layers = [replaced.get(l.name, Layer(l.name, l.type, l.param, l.line, l.file))
              for l in net.layers if l.name not in removed]
    with warnings.catch_warnings():
        # The net was checked, and warned about (duplicate names), before it was folded.
        warnings.simplefilter("ignore", NetdefWarning)
        folded = pipeline.build_net(Net(net.name, layers, net.file), net.state,
                                    {net.blobs[t].name: net.blobs[t].shape for t in net.inputs},
                                    pipeline.NO_BUDGET)
    out = torch_fx.build_module(folded, outputs)
    torch_weights.load_blobs(folded, out, [LayerBlobs(k, "", v, [False] * len(v)) for k, v in blobs.items()])
    out.train(gm.training)
    return folded, out


def fast_path(net, gm):
    """Fold normalization into convolutions, then store 4-D weights channels_last: oneDNN
    (CPU) and cuDNN run NHWC convolutions faster, and a convolution whose weight is
    channels_last makes its output channels_last, so the layout carries through the net
    without the caller converting its inputs. (Sums and ReLUs run in place where that is
    safe in every module the backend builds: accounting.private_fresh_bottoms.)"""
    net, gm = fold_batchnorm(net, gm)
    gm.to(memory_format=torch.channels_last)
    return net, gm

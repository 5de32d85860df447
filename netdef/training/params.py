"""The learnable parameters of a net, as Caffe's Net lists them (Net::AppendParam).

One entry per learnable blob, in net order (layer by layer, blob by blob), each held once:
a blob shared through `param { name }` is the entry of the first layer that declares the
name (its owner); later layers naming it share its tensor, and autograd sums the gradient
of every user into that one tensor, as Caffe's shared diff does. The multipliers resolve as
Caffe resolves them: the owner's lr_mult/decay_mult where it sets them, else the first
sharer's that does; two different values set for one blob are an error.

Statistics blobs (LayerDef.stat_blobs, BatchNorm's) are entries too, with lr_mult 0 as
BVLC master forces: they keep their place in the solver's history, so that a
.solverstate lines up with Caffe's, and are never changed by an update. A blob with lr_mult
0 gets no gradient (Caffe does not propagate to it either).
"""
from dataclasses import dataclass, field

import torch

from compiler.backends import torch_weights
from compiler.errors import NetdefError, NetdefErrors


@dataclass(eq=False)
class Learnable:
    tensor: object                  # the parameter or buffer every holder shares
    owner: tuple                    # (layer name, blob index) of its first holder
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    holders: list = field(default_factory=list)     # [(layer name, blob index)], owner first
    has_lr: bool = False
    has_decay: bool = False


def learnable_params(net, gm):
    """[Learnable] in Caffe's learnable_params() order."""
    entries, by_name, errors = [], {}, []
    for layer, slots in torch_weights.net_blob_slots(net, gm):
        stats = layer.defn.stat_blobs
        for i, (_, tensor, _) in enumerate(slots):
            spec = layer.param.param[i] if i < len(layer.param.param) else None
            has_lr = spec is not None and spec.HasField("lr_mult")
            has_decay = spec is not None and spec.HasField("decay_mult")
            lr = spec.lr_mult if has_lr else 1.0
            decay = spec.decay_mult if has_decay else 1.0
            if i in stats:
                if lr != 0 and has_lr:
                    errors.append(NetdefError(layer.file, layer.line, layer.name,
                                              "blob %d holds statistics; it cannot have lr_mult %g" % (i, lr),
                                              "Caffe refuses this (\"Cannot configure batch normalization "
                                              "statistics as layer parameters\"): use lr_mult: 0"))
                lr, has_lr = 0.0, True
            name = spec.name if spec is not None else ""
            owner = by_name.get(name) if name else None
            if owner is None:
                entry = Learnable(tensor, (layer.name, i), lr, decay, [(layer.name, i)], has_lr, has_decay)
                entries.append(entry)
                if name:
                    by_name[name] = entry
                continue
            owner.holders.append((layer.name, i))
            for what, has, value in (("lr_mult", has_lr, lr), ("decay_mult", has_decay, decay)):
                if not has:
                    continue
                if getattr(owner, "has_" + what.split("_")[0]):
                    if getattr(owner, what) != value:
                        errors.append(NetdefError(layer.file, layer.line, layer.name,
                                                  "shared param '%s' has %s %g here but %g in layer '%s'"
                                                  % (name, what, value, getattr(owner, what), owner.owner[0]),
                                                  "give every layer sharing '%s' the same %s, or set it in "
                                                  "one of them only" % (name, what)))
                else:
                    setattr(owner, what, value)
                    setattr(owner, "has_" + what.split("_")[0], True)
    if errors:
        raise NetdefErrors(errors)
    for entry in entries:
        if isinstance(entry.tensor, torch.nn.Parameter):
            entry.tensor.requires_grad_(entry.lr_mult != 0)
    return entries

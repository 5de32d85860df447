"""netdef run NET [--weights W [--strict]] [--input in.npz] --output out.npz [--blobs all|outputs]
               [--iterations N] [--seed S] [--fast | --compile] [--device D] [--precision fp32|bf16|fp16]

The arrays may have another batch or spatial size than the prototxt declares: the net is
reshaped to them, as Caffe's Net::Reshape does. Weights can fix a size, though (an
InnerProduct's takes one count of inputs): a size they do not fit is reported as a
problem of the input, with the size to feed. Without weights (a saved .netdef carries
its own) the net runs on its filler values, and says so.

Data layers (ImageData, Data, HDF5Data) read their sources (netdef/data), so a net whose
inputs are all data layers needs no --input. With --iterations N the net runs N forward
passes, the data layers moving on by one batch each, and the output holds every blob after
pass k as `iter{k}/{blob}`; --seed sets the randomness (the data layers' shuffle, TRAIN crops
and mirrors, Dropout in TRAIN), a fixed default otherwise."""
import warnings

from compiler.errors import NetdefError, NetdefWarning
from netdef.commands import (add_device_arguments, add_net_arguments, add_seed_argument, add_weights_arguments,
                             parse_net, resolve_device, seeded_data, weights_arguments, write_atomic)


def add_parser(sub):
    p = sub.add_parser("run", help="run forward passes on arrays from an .npz file and/or the net's data layers")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel (or .netdef); without them the net runs on its filler values")
    p.add_argument("--input", help=".npz with one array per input blob that no data layer reads")
    p.add_argument("--output", required=True, help=".npz to write, keys = Caffe blob names")
    p.add_argument("--blobs", choices=["all", "outputs"], default="outputs")
    p.add_argument("--fast", action="store_true",
                   help="inference fast path: fold BatchNorm/Scale into convolutions, channels_last")
    p.add_argument("--compile", action="store_true",
                   help="the fast path compiled by torch.compile (inductor, freezing), warmed up before "
                        "the batch; falls back to --fast with one line saying why")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="run N forward passes; keys become iter{k}/{blob} (k = 1..N)")
    add_seed_argument(p)
    add_device_arguments(p)
    return p


def run(args):
    import numpy as np
    import torch
    import netdef
    from compiler.passes.validate import memory_budget
    from netdef.devices import autocast, place, place_inputs
    from netdef.inference import compile_for_inference
    from netdef.npz import read_npz, write_npz
    if args.iterations is not None and args.iterations < 1:
        raise NetdefError(None, None, None, "--iterations must be at least 1, got %d" % args.iterations)
    arrays = read_npz(args.input, memory_budget(args.max_memory)) if args.input else {}
    device = resolve_device(args)
    net = parse_net(args, {k: v.shape for k, v in arrays.items()})
    data = seeded_data(net, args.seed)
    input_names = [net.blobs[t].name for t in net.inputs]
    missing = [n for n in input_names if n not in arrays and n not in data.blob_names]
    if missing:
        raise NetdefError(args.input, None, None, "no array for input blob(s) %s (%s)" % (
            ", ".join(missing), "the file has %s" % (", ".join(arrays) or "none") if args.input
            else "give them with --input arrays.npz"))
    weights, strict = weights_arguments(args)
    if weights is None and any(layer.defn.blob_shapes(layer, [net.blobs[b].shape for b in layer.bottoms])
                               for layer in net.layers):
        warnings.warn("no --weights: %s runs on its filler values" % args.net, NetdefWarning)
    gm = netdef.compile_net(net, weights, outputs="all" if args.blobs == "all" else None,
                            strict=strict, fast=args.fast or args.compile)
    place(gm, device, args.channels_last)
    if args.compile:
        # Compiled where it runs; the compiled module applies --precision itself.
        gm = compile_for_inference(gm, args.precision)
    result = {}
    batches = data.batches()
    for k in range(1, (args.iterations or 1) + 1):
        feed = place_inputs({n: np.ascontiguousarray(v, dtype=np.float32)
                             for n, v in dict(arrays, **next(batches)).items() if n in input_names},
                            device, args.channels_last)
        with torch.no_grad(), autocast(device, "fp32" if args.compile else args.precision):
            # Positionally: a blob name need not be a Python identifier ("input.1").
            out = gm(*[feed[n] for n in input_names])
        prefix = "iter%d/" % k if args.iterations else ""
        result.update({prefix + name: v.detach().float().cpu().numpy() for name, v in out.items()})
    write_atomic(args.output, lambda tmp: write_npz(tmp, result),
                 inputs=[args.net] + [f for f in (args.input, args.weights) if f])
    print("wrote %d blobs to %s" % (len(result), args.output))
    return 0

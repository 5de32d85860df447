"""netdef run NET [--weights W [--strict]] --input in.npz --output out.npz [--blobs all|outputs]
                [--fast | --compile] [--device D] [--precision fp32|bf16|fp16]

The arrays may have another batch or spatial size than the prototxt declares: the net is
reshaped to them, as Caffe's Net::Reshape does. Weights can fix a size, though (an
InnerProduct's takes one count of inputs): a size they do not fit is reported as a
problem of the input, with the size to feed. Without weights (a saved .netdef carries
its own) the net runs on its filler values, and says so."""
import warnings

from compiler.errors import NetdefError, NetdefWarning
from netdef.commands import (add_device_arguments, add_net_arguments, add_weights_arguments, device_of,
                             parse_net, weights_arguments, write_atomic)


def add_parser(sub):
    p = sub.add_parser("run", help="run a forward pass on arrays from an .npz file")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel (or .netdef); without them the net runs on its filler values")
    p.add_argument("--input", required=True, help=".npz with one array per input blob")
    p.add_argument("--output", required=True, help=".npz to write, keys = Caffe blob names")
    p.add_argument("--blobs", choices=["all", "outputs"], default="outputs")
    p.add_argument("--fast", action="store_true",
                   help="inference fast path: fold BatchNorm/Scale into convolutions, channels_last")
    p.add_argument("--compile", action="store_true",
                   help="the fast path compiled by torch.compile (inductor, freezing), warmed up before "
                        "the batch; falls back to --fast with one line saying why")
    add_device_arguments(p)
    return p


def run(args):
    import numpy as np
    import torch
    import netdef
    from compiler.passes.validate import memory_budget
    from netdef.devices import autocast, place
    from netdef.inference import compile_for_inference
    from netdef.npz import read_npz, write_npz
    arrays = read_npz(args.input, memory_budget(args.max_memory))
    device = device_of(args)
    net = parse_net(args, {k: v.shape for k, v in arrays.items()})
    input_names = [net.blobs[t].name for t in net.inputs]
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise NetdefError(args.input, None, None, "no array for input blob(s) %s (the file has %s)"
                          % (", ".join(missing), ", ".join(arrays) or "none"))
    weights, strict = weights_arguments(args)
    if weights is None:
        warnings.warn("no --weights: %s runs on its filler values" % args.net, NetdefWarning)
    gm = netdef.compile_net(net, weights, outputs="all" if args.blobs == "all" else None,
                            strict=strict, fast=args.fast or args.compile)
    place(gm, device, args.channels_last)
    if args.compile:
        # Compiled where it runs; the compiled module applies --precision itself.
        gm = compile_for_inference(gm, args.precision)
    with torch.no_grad(), autocast(device, "fp32" if args.compile else args.precision):
        # Positionally: a blob name need not be a Python identifier ("input.1").
        out = gm(*[torch.from_numpy(np.ascontiguousarray(arrays[n], dtype=np.float32)).to(device)
                   for n in input_names])
    result = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
    write_atomic(args.output, lambda tmp: write_npz(tmp, result),
                 inputs=[args.net, args.input] + ([args.weights] if args.weights else []))
    print("wrote %d blobs to %s" % (len(result), args.output))
    return 0

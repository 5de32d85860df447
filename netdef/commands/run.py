"""netdef run NET --weights W --input in.npz --output out.npz [--blobs all|outputs]
                [--fast | --compile [--precision bf16]]

The arrays may have another batch or spatial size than the prototxt declares: the net is
reshaped to them, as Caffe's Net::Reshape does."""
import argparse

from compiler.errors import NetdefError
from netdef.commands import add_net_arguments, parse_net, write_atomic


def add_parser(sub):
    p = sub.add_parser("run", help="run a forward pass on arrays from an .npz file")
    add_net_arguments(p)
    p.add_argument("--weights", help=".caffemodel (or .netdef)")
    p.add_argument("--no-strict", action="store_true")
    p.add_argument("--input", required=True, help=".npz with one array per input blob")
    p.add_argument("--output", required=True, help=".npz to write, keys = Caffe blob names")
    p.add_argument("--blobs", choices=["all", "outputs"], default="outputs")
    p.add_argument("--fast", action="store_true",
                   help="inference fast path: fold BatchNorm/Scale into convolutions, channels_last")
    p.add_argument("--compile", action="store_true",
                   help="the fast path compiled by torch.compile (inductor, freezing), warmed up before "
                        "the batch; falls back to --fast with one line saying why")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="with --compile: autocast to bf16 (CPU or CUDA) or fp16 (CUDA); default fp32, "
                        "Caffe's numbers")
    return p


def run(args):
    if args.precision != "fp32" and not args.compile:
        raise argparse.ArgumentTypeError("--precision %s needs --compile" % args.precision)
    import numpy as np
    import torch
    import netdef
    try:
        with np.load(args.input, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise NetdefError(args.input, None, None, "cannot read input arrays: %s" % e) from None
    net = parse_net(args, {k: v.shape for k, v in arrays.items()})
    names = [net.blobs[t].name for t in net.inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise NetdefError(args.input, None, None, "no array for input blob(s) %s (the file has %s)"
                          % (", ".join(missing), ", ".join(arrays) or "none"))
    gm = netdef.compile_net(net, args.weights, outputs="all" if args.blobs == "all" else None,
                            strict=not args.no_strict, fast=args.fast, compile=args.compile,
                            precision=args.precision)
    with torch.no_grad():
        out = gm(**{n: torch.from_numpy(np.ascontiguousarray(arrays[n], dtype=np.float32)) for n in names})
    result = {k: v.detach().cpu().numpy() for k, v in out.items()}
    write_atomic(args.output, lambda tmp: np.savez(tmp, **result))
    print("wrote %d blobs to %s" % (len(result), args.output))
    return 0

"""netdef export NET --weights W [--onnx F.onnx] [--safetensors F.safetensors] [--python F.py]
                 [--torchscript F.pt] [--caffemodel F.caffemodel] [--prototxt F.prototxt]

The net with its weights as the files other runtimes read. Every requested file is made
first (in a temporary folder), and only when all of them could be made are they written:
a net that one format cannot take (a layer TorchScript cannot compile, a DetectionOutput
that ONNX cannot capture) leaves nothing behind."""
import os
import shutil
import tempfile
from pathlib import Path

from compiler.errors import NetdefError
from netdef.commands import add_net_arguments, check_output, add_weights_arguments, parse_net, weights_arguments, write_atomic

FORMATS = ("onnx", "safetensors", "python", "torchscript", "caffemodel", "prototxt")


def add_parser(sub):
    p = sub.add_parser("export", help="write a net with its weights as ONNX, safetensors, a Python file, "
                                      "TorchScript or Caffe files")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel, .netdef or .safetensors to export (without them: the filler values)")
    p.add_argument("--onnx", metavar="F.onnx", help="ONNX model (inputs and outputs keep the Caffe blob names)")
    p.add_argument("--safetensors", metavar="F.safetensors",
                   help="the weights, keys LAYER/INDEX; netdef.load(..., weights=F) reads them back")
    p.add_argument("--python", metavar="F.py",
                   help="a standalone Python file defining the module (torch and numpy only), and its "
                        "weights beside it as F.npz")
    p.add_argument("--torchscript", metavar="F.pt", help="the module compiled by torch.jit.script")
    p.add_argument("--caffemodel", metavar="F.caffemodel", help="Caffe weights (as compile --export-caffemodel)")
    p.add_argument("--prototxt", metavar="F.prototxt", help="the net as a Caffe prototxt")
    return p


def run(args):
    import netdef
    from netdef.inference import export
    outputs = {fmt: getattr(args, fmt) for fmt in FORMATS if getattr(args, fmt)}
    if not outputs:
        raise NetdefError(args.net, None, None, "nothing to export",
                          "name at least one output: --onnx, --safetensors, --python, --torchscript, "
                          "--caffemodel or --prototxt")
    files = dict(outputs)
    if "python" in outputs:
        files["python weights"] = str(Path(outputs["python"]).with_suffix(".npz"))
    sources = [args.net] + ([args.weights] if args.weights else [])
    for path in files.values():
        # Refused before anything is computed: an output that is an input, or a folder that is not there.
        check_output(path, sources)
    net = parse_net(args)
    weights, strict = weights_arguments(args)
    gm = netdef.compile_net(net, weights, strict=strict)
    gm.eval()
    with tempfile.TemporaryDirectory(prefix="netdef-export-") as tmp:
        made = {}
        for fmt, path in outputs.items():
            made[fmt] = os.path.join(tmp, fmt + Path(path).suffix)
            if fmt == "onnx":
                export.write_onnx(gm, made[fmt])
            elif fmt == "safetensors":
                export.write_safetensors(gm, made[fmt])
            elif fmt == "python":
                weights_name = Path(files["python weights"]).name
                Path(made[fmt]).write_text(export.python_source(gm, weights_name))
                made["python weights"] = os.path.join(tmp, "python-weights.npz")
                from netdef.npz import write_npz
                write_npz(made["python weights"], export.blob_arrays(gm)[0])
            elif fmt == "torchscript":
                export.write_torchscript(gm, made[fmt])
            elif fmt == "caffemodel":
                netdef.export(gm, made[fmt])
            else:
                from compiler.backends.prototxt import net_to_text
                Path(made[fmt]).write_text(net_to_text(netdef.record(gm).net))
        for fmt, path in files.items():
            write_atomic(path, lambda target, source=made[fmt]: shutil.copyfile(source, target), inputs=sources)
            print("wrote %s (%s)" % (path, fmt))
    return 0


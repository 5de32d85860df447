"""netdef predict NET --weights W IMAGES... [--crops 1|10] [--ensemble [NET2:]W2 ...] [--top K]
                  [--labels labels.txt] [--mean M] [--scale S] [--resize H,W] [--crop C] [--device D]

Top-K classes and probabilities per image (netdef/inference/predict.py). NET is a deploy
net or a train_val (whose deploy net, netdef deploy's, is used). Images are preprocessed
by the net's transform_param where it has one, else by --mean/--scale/--resize/--crop.
--crops 10 averages the centre, the four corners and their mirrors; --ensemble averages
the outputs of other weights of the same net (snapshots) or of other nets (NET2:W2). The
class names come from --labels, else from the labels file beside NET (NET.labels.txt)."""
import os

from compiler.errors import NetdefError
from netdef.commands import memory_size, parse_input_shapes, resolve_device


def add_parser(sub):
    p = sub.add_parser("predict", help="classify images: top-K classes per image, with crops and ensembles")
    add_prediction_arguments(p)
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes shown per image (default 5)")
    return p


def add_prediction_arguments(p):
    """predict's options: the net, the images, their preprocessing, crops, ensembles."""
    p.add_argument("net", help="deploy or train_val net: .prototxt, .net or .netdef")
    p.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    p.add_argument("--weights", help=".caffemodel, .netdef or .safetensors")
    p.add_argument("--net", dest="net_name", metavar="NAME", help="which net of a .net file that declares several")
    add_averaging_arguments(p)
    p.add_argument("--labels", metavar="labels.txt", help="class names, one a line")
    p.add_argument("--blob", help="the output to read (default: the net's only output)")
    add_preprocessing_arguments(p)
    p.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                   help="a data top's shape, where netdef cannot read it (train_val nets)")
    p.add_argument("--max-memory", type=memory_size, metavar="SIZE")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--gpu", default=None, metavar="N", help="Caffe's flag: same as --device cuda:N")


def add_averaging_arguments(p):
    """The test-time options predict and test share: crops and ensembles."""
    p.add_argument("--crops", type=int, choices=[1, 10], default=1,
                   help="1: the centre crop; 10: centre, corners and their mirrors, outputs averaged")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="[NET:]W",
                   help="more weights of the same net (or NET:WEIGHTS of another), outputs averaged")


def add_preprocessing_arguments(p):
    """How images are prepared for a net that does not say it (no transform_param)."""
    p.add_argument("--mean", help="without a transform_param: mean per channel (B,G,R) or a mean .binaryproto")
    p.add_argument("--scale", type=float, help="without a transform_param: multiply pixels by this")
    p.add_argument("--resize", metavar="H,W", help="resize images to H,W before cropping")
    p.add_argument("--crop", type=int, help="without a transform_param: crop size")


def preprocessor(args, net):
    """The Preprocessor of the net's transform_param, or of --mean/--scale/--crop; --resize
    either way. A net that declares its preprocessing refuses the flags that would change it."""
    from netdef.inference.predict import Preprocessor, given_transform, net_transform
    declared = net_transform(net)
    if declared is not None and any(v is not None for v in (args.mean, args.scale, args.crop)):
        raise NetdefError(net.file, None, None, "the net declares its preprocessing (transform_param); "
                          "--mean, --scale and --crop are for nets without one")
    transform, size, color = declared or (given_transform(args.mean, args.scale, args.crop), (0, 0), True)
    return Preprocessor(transform, parse_size(args.resize) if args.resize else size, color)


def run(args):
    from netdef.inference.labels import labels_beside, read_labels
    from netdef.inference.predict import top_k
    if args.top < 1:
        raise NetdefError(args.net, None, None, "--top must be at least 1, got %d" % args.top)
    classifier = Classifier(args)
    labels_file = args.labels or (labels_beside(args.net) if labels_beside(args.net).is_file() else None)
    labels = read_labels(labels_file) if labels_file else None
    results = [(image, classifier.probabilities(image)) for image in args.images]
    classes = results[0][1].numel()
    if labels is not None and len(labels) != classes:
        raise NetdefError(str(labels_file), None, None, "%d class names for a net of %d classes"
                          % (len(labels), classes))
    for image, probs in results:
        print(image)
        for index, p in top_k(probs, args.top):
            print("  %.4f  %s" % (p, labels[index] if labels else "class %d" % index))
    return 0


class Classifier:
    """The net (made a deploy net if it is a train_val), its ensemble and preprocessing, as
    the command line asks."""

    def __init__(self, args):
        self.crops = args.crops
        self.device = resolve_device(args)
        shapes = parse_input_shapes(args.input_shape)
        first = deploy_net(args.net, args.net_name, shapes, args.max_memory)
        self.preprocessor = preprocessor(args, first)
        self.members = [self._member(first, args.net, args.weights, args.blob)]
        for spec in args.ensemble:
            net_file, weights = member_files(spec, args.net)
            net = first if net_file == args.net else deploy_net(net_file, None, shapes, args.max_memory)
            self.members.append(self._member(net, net_file, weights, args.blob))

    def _member(self, net, net_file, weights, blob):
        """(net, weights file, blob, softmax?, module cache) of one ensemble member."""
        if weights is None and not str(net_file).endswith(".netdef"):
            raise NetdefError(net_file, None, None, "predict needs trained weights: give --weights")
        blob = blob or _only_output(net)
        if blob not in net.blob_order:
            raise NetdefError(net_file, None, None, "no blob named %s in the net" % blob)
        from compiler.layers.reduction import Softmax
        producer = net.layer(net.blobs[net.latest[blob]].producer)
        return {"net": net, "file": net_file, "weights": weights or net_file, "blob": blob,
                "softmax": not isinstance(producer.defn, Softmax), "modules": {}}

    def _module(self, member, shape):
        """The member's module for input batches of `shape` (built once per shape: the net
        is reshaped to the crops as Caffe's Net::Reshape does)."""
        import netdef
        from compiler import pipeline
        from compiler.state import NetState
        if shape not in member["modules"]:
            net = member["net"]
            name = net.blobs[net.inputs[0]].name
            reshaped = pipeline.build_net(_copy(net), NetState("TEST"), {name: shape})
            gm = netdef.compile_net(reshaped, member["weights"], outputs=[member["blob"]])
            member["modules"][shape] = gm.to(self.device).eval()
        return member["modules"][shape]

    def probabilities(self, image):
        """The averaged class probabilities of one image file (over crops and members)."""
        import torch
        from netdef.inference.predict import ensemble
        batch = torch.from_numpy(self.preprocessor.crops(image, self.crops)).to(self.device)
        members = [(self._module(m, tuple(batch.shape)), m["blob"], m["softmax"], m["weights"])
                   for m in self.members]
        return ensemble(members, batch).mean(0).cpu()


def deploy_net(path, name, shapes, max_memory):
    """The TEST net of `path`, made its deploy net (netdef deploy) when it has losses: the
    net that predicts."""
    from compiler import pipeline
    from compiler.layers.loss import LossLayer
    from compiler.state import NetState
    from netdef.inference import deploy
    net = pipeline.build(path, NetState("TEST"), shapes, max_memory, name)
    if not any(isinstance(l.defn, LossLayer) for l in net.layers):
        return net
    return deploy.deploy_net(net)


def _copy(net):
    """A fresh unwired copy of the net's layers, for shaping again."""
    import copy
    from compiler.ir import Net
    return Net(net.name, [copy.deepcopy(l) for l in net.layers], file=net.file)


def _only_output(net):
    outputs = net.outputs
    if len(outputs) != 1:
        raise NetdefError(net.file, None, None, "the net has %d outputs (%s)" % (len(outputs), ", ".join(outputs)),
                          "choose the one with the class scores: --blob NAME")
    return outputs[0]


def member_files(spec, net):
    """An --ensemble value -> (net file, weights): WEIGHTS (of the main net) or NET:WEIGHTS."""
    head, sep, tail = spec.rpartition(":")
    if sep and os.path.isfile(head):
        return head, tail
    return net, spec


def parse_size(text):
    try:
        dims = [int(v) for v in text.replace("x", ",").split(",")]
        if len(dims) == 1:
            dims *= 2
        if len(dims) != 2 or min(dims) < 1:
            raise ValueError
    except ValueError:
        raise NetdefError("--resize", None, None, "--resize takes H,W (or one size), got %r" % text) from None
    return tuple(dims)

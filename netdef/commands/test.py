"""netdef test NET --weights W [--iterations N] [--phase train|test] [--input in.npz] [--seed S]
                [--crops 1|10] [--ensemble [NET2:]W2 ...]

Caffe's `caffe test`: N forward passes; each output element of each pass printed as
`Batch i, name = value`; then `Loss: L` (the mean of the net's loss) and each output's mean
over the passes, a weighted loss output with ` (* weight = weighted loss)`.

Data layers (ImageData, Data, HDF5Data) read their sources (netdef/data, as `netdef run`
does), pass after pass, as Caffe's test net reads them. Other inputs come from `--input`: an
.npz with one array per input blob, entry j along the first axis the batch of pass j (as
`netdef train --feed`). Without --iterations, every entry is used once; Caffe's default of
50 applies to nets that need no arrays. --seed sets the randomness (the data layers' shuffle,
TRAIN crops and mirrors, Dropout in TRAIN): one seed, one score. Caffe's tool has no seed (a
TRAIN net's Dropout differs run to run); netdef's default seed is fixed.

--crops 10 and --ensemble score what netdef predict computes: the class probabilities of
the main SoftmaxWithLoss's scores averaged over the ten crops of each image (read
uncropped from the data layers) and over the members (other weights of the net, or
NET2:W2 of another net), with the net's losses and accuracies of those scores computed on
the average (netdef/inference/averaged.py), so the gain of crops and ensembles, and its
time, can be measured."""
from compiler.errors import NetdefError
from netdef.commands import (add_device_arguments, add_net_arguments, add_seed_argument, add_weights_arguments,
                             net_state, parse_input_shapes, parse_net, resolve_device, seeded_data,
                             weights_arguments)
from netdef.commands.predict import add_averaging_arguments, member_files

CAFFE_ITERATIONS = 50       # caffe.cpp's FLAGS_iterations default


def add_parser(sub):
    p = sub.add_parser("test", help="score a net: mean of every output over N batches (caffe test)")
    add_net_arguments(p)
    add_weights_arguments(p, ".caffemodel (or .netdef) to score (a saved .netdef NET carries its own)")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="forward passes (default: every batch of --input, else 50)")
    p.add_argument("--input", metavar="IN.npz",
                   help="arrays per input blob, entry j along the first axis = batch j")
    add_averaging_arguments(p)
    add_seed_argument(p)
    add_device_arguments(p)
    return p


def check_arrays(path, arrays, input_names, iterations):
    """The arrays checked against the net's inputs -> ({input name: array}, iterations)."""
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise NetdefError(path, None, None, "no array for input blob(s) %s" % ", ".join(missing),
                          "the file has %s; arrays are keyed by input blob name"
                          % (", ".join(arrays) or "no arrays"))
    arrays = {n: arrays[n] for n in input_names}
    available = min(len(a) for a in arrays.values())
    if iterations is None:
        iterations = available
    if available < iterations:
        raise NetdefError(path, None, None, "the arrays hold %d batches; --iterations asks for %d"
                          % (available, iterations), "entry j along the first axis is the batch of pass j")
    return arrays, iterations


def run(args):
    import netdef
    from compiler.passes.validate import memory_budget
    from netdef.npz import read_npz
    from netdef.devices import place
    from netdef.training.log import caffe_float, loss_note
    from netdef.training.scoring import array_batches, outputs_with_losses, score
    if args.iterations is not None and args.iterations < 1:
        raise NetdefError("--iterations", None, None, "needs at least 1 iteration, got %d" % args.iterations)
    weights, strict = weights_arguments(args)
    if weights is None:
        # caffe test: "Need model weights to score."
        raise NetdefError(args.net, None, None, "netdef test scores trained weights: give them with --weights")
    device = resolve_device(args)
    arrays = read_npz(args.input, memory_budget(args.max_memory)) if args.input is not None else {}
    flat = [n for n, a in arrays.items() if a.ndim < 2]
    if flat:
        raise NetdefError(args.input, None, None, "array %s has no batch axis after the first one"
                          % ", ".join(flat), "entry j along the first axis is the whole batch of pass j")
    # The net is shaped to one batch of the arrays, as Caffe's Net::Reshape would.
    net = parse_net(args, {n: a.shape[1:] for n, a in arrays.items()})
    data = seeded_data(net, args.seed)
    array_names = [net.blobs[t].name for t in net.inputs if net.blobs[t].name not in data.blob_names]
    if array_names and args.input is None:
        layers = sorted({net.blobs[t].producer for t in net.inputs if net.blobs[t].name in array_names})
        raise NetdefError(net.file, None, None, "the net's inputs %s (layer %s) need batches"
                          % (", ".join(array_names), ", ".join(layers)),
                          "give them with --input in.npz (entry j along the first axis = batch j)")
    if array_names:
        arrays, iterations = check_arrays(args.input, arrays, array_names, args.iterations)
        batches = array_batches(arrays)
    else:
        iterations = args.iterations or CAFFE_ITERATIONS
        batches = iter(dict, None)      # no arrays to feed: an empty dict per pass
    if args.crops == 10 and not data.blob_names:
        raise NetdefError(net.file, None, None, "--crops 10 cuts the crops from the images the net's data "
                          "layers read; this net reads none", "arrays from --input are fed as they are")
    averaged, crop_sizes = None, {}
    if args.crops == 10 or args.ensemble:
        averaged, data, crop_sizes = averaged_scoring(args, net, weights, strict, device)
    if data.blob_names:
        batches = (dict(fed, **read) for fed, read in zip(batches, data.batches()))
    if averaged is not None:
        net, batches = averaged.net, averaged.batches(batches, crop_sizes)
    gm = netdef.compile_net(net, None if averaged else weights, outputs=outputs_with_losses(net), strict=strict)
    place(gm, device, args.channels_last)

    def print_batch(i, values):
        for name, flat in values:
            for v in flat:
                print("Batch %d, %s = %s" % (i, name, caffe_float(v)))

    print("Running for %d iterations." % iterations)
    scores = score(gm, net, batches, iterations, device, args.precision, args.channels_last, print_batch)
    print("Loss: %s" % caffe_float(scores.loss))
    for name, means, weight in scores.outputs:
        for v in means:
            print("%s = %s%s" % (name, caffe_float(v), loss_note(v, weight)))
    return 0


def averaged_scoring(args, net, weights, strict, device):
    """(the AveragedScoring of the net and its --ensemble members, the NetData to read,
    {image top: crop size}): with --crops 10 the data layers read whole images."""
    from compiler import pipeline
    from netdef.inference.averaged import AveragedScoring, uncropped
    state, shapes = net_state(args), parse_input_shapes(args.input_shape)
    averaged = AveragedScoring(net, args.crops, device, args.precision, args.channels_last)
    averaged.add(net, weights, weights, strict)
    for spec in args.ensemble:
        net_file, member_weights = member_files(spec, args.net)
        member = net if net_file == args.net else pipeline.build(net_file, state, shapes, args.max_memory)
        averaged.add(member, member_weights, member_weights, strict)
    whole, crop_sizes = uncropped(net, state, shapes) if args.crops == 10 else (net, {})
    return averaged, seeded_data(whole, args.seed), crop_sizes

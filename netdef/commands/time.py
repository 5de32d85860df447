"""netdef time NET [--iterations N] [--phase train|test]

Caffe's `caffe time`: forward and backward milliseconds per layer and in total, averaged
over N iterations after one warm-up pass, printed as caffe time prints them. The net runs
in TRAIN by default, as caffe time's does; inputs are zeros of the net's shapes (caffe time
assumes a net that takes no input blobs). How the figures are measured:
netdef/training/timing.py."""
from compiler.errors import NetdefError
from netdef.commands import (add_device_arguments, add_net_arguments, add_weights_arguments, parse_net,
                             resolve_device, weights_arguments)


def add_parser(sub):
    p = sub.add_parser("time", help="per-layer forward and backward time (caffe time)")
    add_net_arguments(p)
    p.set_defaults(phase="train")
    add_weights_arguments(p, ".caffemodel (or .netdef); the filler values otherwise (time does not depend on them)")
    p.add_argument("--iterations", type=int, default=50, metavar="N",
                   help="timed iterations (default 50, as caffe time)")
    add_device_arguments(p)
    return p


def run(args):
    import netdef
    from netdef.devices import place
    from compiler.accounting import human_bytes
    from netdef.training.log import caffe_float
    from netdef.training.memory import training_step_memory
    from netdef.training.scoring import outputs_with_losses
    from netdef.training.timing import time_net
    if args.iterations < 1:
        raise NetdefError("--iterations", None, None, "needs at least 1 iteration, got %d" % args.iterations)
    device = resolve_device(args)
    net = parse_net(args)
    weights, strict = weights_arguments(args)
    gm = netdef.compile_net(net, weights, outputs=outputs_with_losses(net), strict=strict)
    place(gm, device, args.channels_last)
    print("Testing for %d iterations." % args.iterations)
    timing = time_net(gm, net, args.iterations, device, args.precision, args.channels_last,
                      on_iteration=lambda j, ms: print("Iteration: %d forward-backward time: %s ms."
                                                       % (j + 1, caffe_float(ms))))
    print("Initial loss: %s" % caffe_float(timing.initial_loss))
    print("Average time per layer: ")
    for name, forward, backward in timing.layers:
        print("%10s\tforward: %s ms." % (name, caffe_float(forward)))
        print("%10s\tbackward: %s ms." % (name, caffe_float(backward)))
    if timing.fused:
        print("%d BatchNorm layers run inside the Scale after them (one batch_norm call; their time "
              "is the Scale's): %s" % (len(timing.fused), ", ".join("%s in %s" % pair for pair in timing.fused.items())))
    print("Average Forward pass: %s ms." % caffe_float(timing.forward_ms))
    print("Average Backward pass: %s ms." % caffe_float(timing.backward_ms))
    print("Average Forward-Backward: %s ms." % caffe_float(timing.forward_backward_ms))
    print("Total Time: %s ms." % caffe_float(sum(timing.iteration_ms)))
    if net.phase == "TRAIN":
        memory = training_step_memory(gm, {net.blobs[t].name: net.blobs[t].shape for t in net.inputs})
        print("Memory of a training step (estimate, with SGD's history): %s (weights %s, gradients %s, "
              "history %s, kept for backward %s)" % tuple(human_bytes(b) for b in (
                  memory.total, memory.weights, memory.gradients, memory.history, memory.activations)))
    return 0

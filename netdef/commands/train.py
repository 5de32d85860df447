"""netdef train SOLVER [--weights W] [--feed batches.npz] [--trace out.npz]
                    [--snapshot PREFIX_iter_N.solverstate] [--device D] [--gpu N]
                    [--precision fp32|bf16|fp16] [--channels-last] [--log FILE]
                    [--data-workers N] [--max-memory SIZE]

Caffe's `caffe train`: the solver file's nets, schedule and update, with the module
running on PyTorch. --feed gives the inputs (entry j of each array feeds forward pass j);
--trace writes what Caffe's golden traces hold: `loss` and `lr` per iteration,
`iter{k}/{layer}/{i}` (every parameter blob after iteration k, for every layer holding
it) and `fwd1/{blob}` (every blob of the first forward pass). Under torchrun each process
trains on its share of every batch and only rank 0 logs and snapshots.

Without --feed, a net's data layers (ImageData, Data, HDF5Data) feed it (netdef/data):
--data-workers processes make the batches ahead of the model, each torchrun rank reads its
own shard, the randomness follows random_seed and a resumed run continues the sequence;
every `display` iterations the log gives the share of the time spent waiting for data.

SIGINT snapshots and stops, SIGHUP snapshots and goes on (Caffe's defaults).
"""
import os

from compiler.errors import NetdefError, NetdefErrors, NetdefWarning
from netdef.commands import add_device_arguments, add_memory_argument, resolve_device


def add_parser(sub):
    p = sub.add_parser("train", help="train with a Caffe solver file")
    p.add_argument("solver", help="solver .prototxt (Caffe's SolverParameter)")
    p.add_argument("--weights", help="initial weights (.caffemodel): copied by layer name, as Caffe does")
    p.add_argument("--feed", help=".npz of input batches: entry j of each array feeds forward pass j")
    p.add_argument("--test-feed", action="append", default=[], metavar="NPZ",
                   help="inputs of a test net (once per test net, in order): entry i feeds test pass i")
    p.add_argument("--trace", help="write losses, rates and parameters per iteration to this .npz")
    p.add_argument("--snapshot", help="resume from a .solverstate (or .solverstate.h5)")
    add_device_arguments(p)
    add_memory_argument(p)
    p.add_argument("--log", help="also write the log lines to this file")
    p.add_argument("--data-workers", type=int, default=1, metavar="N",
                   help="worker processes making the data layers' batches ahead of the model (0: inline)")
    return p


def run(args):
    from compiler.frontends.solver import read_solver
    from netdef.training.solver import check_solver
    if args.snapshot and args.weights:
        import argparse
        # Caffe refuses this too: a snapshot holds its own weights.
        raise argparse.ArgumentTypeError("give --snapshot to resume or --weights to fine-tune, not both")
    solver_file = read_solver(args.solver)
    check_solver(solver_file)
    device = resolve_device(args)
    rank, world, distributed = _distributed(device)
    try:
        return _train(args, solver_file, device, rank, world, distributed)
    finally:
        if distributed is not None:
            # Without it gloo's threads outlive the process group and the C++ runtime aborts
            # at exit ("terminate called without an active exception"): a failed exit code.
            # The DistributedDataParallel wrapper holds the group too, from reference cycles
            # that outlive _train: collected first, so that destroying the group ends its
            # threads now, not in the interpreter's teardown (where about 1 run in 3 under
            # load aborted the same way).
            import gc

            import torch.distributed as dist
            gc.collect()
            dist.destroy_process_group()


def _train(args, solver_file, device, rank, world, distributed):
    import sys
    import warnings

    import numpy as np

    import netdef
    from netdef.data.feed import WaitShare, attach
    from netdef.training.feed import ArrayFeed, read_feed
    from netdef.training.log import TrainingLog
    from netdef.training.solver import Solver
    errors = []
    for path, what in [(args.weights, "weights"), (args.snapshot, "solver state"), (args.feed, "feed")] + \
            [(f, "test feed") for f in args.test_feed]:
        if path and not os.path.isfile(path):
            errors.append(NetdefError(path, None, None, "%s file does not exist" % what))
    for path in (args.trace, args.log):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            errors.append(NetdefError(path, None, None, "its folder does not exist"))
    if errors:
        raise NetdefErrors(errors)
    feed = ArrayFeed(read_feed(args.feed), args.feed, rank, world) if args.feed else None
    test_feeds = [ArrayFeed(read_feed(f), f) for f in args.test_feed]
    if rank != 0:
        warnings.simplefilter("ignore", NetdefWarning)     # rank 0 says it once
    p = solver_file.param
    solver = Solver(solver_file, feed=feed, weights=args.weights or list(p.weights) or None,
                    device=device, precision=args.precision, channels_last=args.channels_last,
                    record=bool(args.trace),
                    input_shapes=feed.input_shapes() if feed else None, distributed=distributed,
                    test_feeds=test_feeds, max_memory=args.max_memory)
    data = attach(solver, args.data_workers, rank, world) if feed is None else None
    inputs = netdef.record(solver.module).input_names
    if inputs and feed is None and data is None:
        raise NetdefError(args.solver, None, None, "the train net's inputs (%s) need data"
                          % ", ".join(inputs), "give --feed batches.npz")
    errors = feed.check(inputs, p.max_iter * p.iter_size) if feed else []
    for k, (f, (_, gm)) in enumerate(zip(test_feeds, solver.test_nets)):
        errors += f.check(netdef.record(gm).input_names, p.test_iter[k])
    if errors:
        raise NetdefErrors(errors)
    # Created only now: a run refused above writes nothing, not even its log.
    log = solver.log = TrainingLog(args.log if rank == 0 else None, sys.stderr if rank == 0 else None,
                                   p.average_loss, display=p.display, max_iter=p.max_iter,
                                   append=bool(args.snapshot), net_name=solver.net.name)
    if solver.weights_report is not None and rank == 0:
        _log_weights(log, solver.weights_report)
    trace = {}

    def record(s, loss, rate):
        trace.setdefault("loss", []).append(loss)
        trace.setdefault("lr", []).append(rate)
        for e in s.params:
            value = e.tensor.detach().float().cpu().numpy().copy()
            for layer, i in e.holders:
                trace["iter%d/%s/%d" % (s.iter, layer, i)] = value

    log.info("Solving %s" % solver.net.name)
    log.info("Learning Rate Policy: %s" % p.lr_policy)
    wait = WaitShare(data) if data is not None else None

    def on_iteration(s, loss, rate):
        if args.trace:
            record(s, loss, rate)
        if wait is not None and p.display and s.iter % p.display == 0:
            log.info("Iteration %d, data wait = %.1f%% of the time since the last report" % (s.iter, 100 * wait()))

    with solver.signals():
        finished = solver.solve(args.snapshot, on_iteration)
    log.info("Optimization Done." if finished else "Optimization stopped early.")
    if args.trace and rank == 0:
        from netdef.commands import write_atomic
        from netdef.npz import write_npz
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in trace.items()}
        arrays.update({"fwd1/%s" % k: v for k, v in (solver.first_forward or {}).items()})
        write_atomic(args.trace, lambda tmp: write_npz(tmp, arrays),
                     inputs=[args.solver] + [f for f in (args.feed, args.weights, args.snapshot) if f])
    log.close()
    return 0


def _log_weights(log, reports):
    """Which layers came from the weights file(s) and which kept their fillers
    (compiler.passes.weights.WeightsReport, one per file)."""
    for report in reports:
        log.info("Copying layers from %s: %s" % (report.file, ", ".join(report.loaded) or "none"))
        if report.ignored:
            log.info("Ignoring the file's layers the net lacks: %s" % ", ".join(report.ignored))
    kept = set.intersection(*(set(r.kept_fillers) for r in reports))
    if kept:
        log.info("Keeping their filler values (in no file): %s"
                 % ", ".join(n for n in reports[0].kept_fillers if n in kept))


def _distributed(device):
    """(rank, world size, wrapper) under torchrun (WORLD_SIZE set), else (0, 1, None):
    DistributedDataParallel averages the gradients over the processes, as Caffe's
    multi-GPU solver does (sum, then 1/solver_count)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()

    def wrap(module):
        from torch.nn.parallel import DistributedDataParallel
        # DDP broadcasts rank 0's buffers on every forward, as Caffe's P2PSync broadcasts the
        # root's blobs (BatchNorm's statistics among them) every iteration; a layer's
        # recurrent state is each GPU's own in Caffe, so those buffers stay out of it.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, per_process_buffers(module))
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    return rank, world, wrap


def per_process_buffers(module):
    """The qualified names of the buffers that `module`'s submodules hold per process: those
    each one names in its `per_process_buffers` (compiler/layers/base.py)."""
    return [prefix + "." + name if prefix else name for prefix, m in module.named_modules()
            for name in getattr(m, "per_process_buffers", ())]

"""Caffe's Solver on a compiled module: the same iteration, the same update arithmetic.

One iteration (Solver::Step), exactly as Caffe orders it:
  1. clear the gradients; test first if test_interval says so;
  2. iter_size forward/backward passes, the gradients accumulating; the iteration's loss
     is the mean of the passes' losses (each the sum of loss_weight x every loss top);
  3. the rate of the lr policy at iter (the number of updates so far);
  4. ClipGradients: when the L2 norm of all gradients exceeds clip_gradients, scale
     them all by clip_gradients / norm (before step 5: the accumulated sum is clipped);
  5. per parameter: Normalize (divide by iter_size), Regularize (L2: + local_decay * w,
     L1: + local_decay * sign(w), local_decay = weight_decay x decay_mult), then the solver
     type's update with the local rate (rate x lr_mult), subtracted from the weights;
  6. iter += 1; snapshot when iter is a multiple of `snapshot` or a signal asked for one.
The parameters come from netdef.training.params (Caffe's learnable_params order, shared
blobs once); steps 4-5 run as torch._foreach_* ops over groups of equal multipliers.

Test nets are compiled from their own NetState and share the train net's blobs by layer
name (Net::ShareTrainedLayersWith), BatchNorm statistics included.

Data: the module's inputs come from a `feed`, a callable giving {input blob: array} for
forward pass j (j counts every pass since iteration 0, so a resumed run continues where
it stopped). netdef.training.feed.ArrayFeed reads them from arrays.
"""
import contextlib
import math
import os
import signal
import time
import warnings

import numpy as np
import torch

from compiler import pipeline
from compiler.backends.record import record_of
from compiler.errors import NetdefError, NetdefErrors, NetdefWarning
from compiler.frontends.solver import read_solver
from compiler.layers.loss import loss_weight
from compiler.passes.validate import check_memory
from netdef.devices import autocast, place
from netdef.training import lr_policies, snapshot as snapshots, solver_types
from netdef.training.params import learnable_params

def check_solver(solver_file):
    """The solver type and lr policy of a read solver file, checked against the registries:
    (SolverType, LrPolicy), or NetdefErrors with every problem, located."""
    p = solver_file.param
    errors = []
    kind = solver_types.get(p.type)
    if kind is None:
        errors.append(solver_file.error("type", "unknown solver type \"%s\"" % p.type,
                                        solver_types.REGISTRY.unknown_hint(p.type)))
    policy = lr_policies.get(p.lr_policy)
    if policy is None:
        errors.append(solver_file.error("lr_policy", "unknown lr_policy \"%s\"" % p.lr_policy
                                        if p.HasField("lr_policy") else "lr_policy is not set",
                                        lr_policies.REGISTRY.unknown_hint(p.lr_policy)))
    for defn in (kind, policy):
        for name, message, hint in (defn.check(p) if defn is not None else []):
            errors.append(solver_file.error(name, message, hint))
    if p.snapshot_format == p.HDF5:
        try:
            import h5py  # noqa: F401
        except ImportError:
            errors.append(solver_file.error("snapshot_format", "snapshot_format HDF5 needs h5py",
                                            "pip install h5py (netdef[hdf5]), or use BINARYPROTO"))
    if errors:
        raise NetdefErrors(errors)
    return kind, policy


def build_net(source, input_shapes=None, max_memory=None):
    """A solver's NetSource -> wired, shaped IR Net in the source's NetState, refused when
    it would not fit `max_memory` (pipeline.check: a TRAIN net's training step)."""
    if source.proto is None:
        return pipeline.build(source.file, source.state, input_shapes, max_memory)
    from compiler.frontends import prototxt
    net = prototxt.net_from_proto(source.proto, source.file, source.lines)
    return pipeline.build_net(net, source.state, input_shapes, max_memory)


def loss_terms(net):
    """[(Caffe blob name, loss weight)] of every top with a non-zero weight in the net's loss."""
    terms = []
    for layer in net.layers:
        for top, weight in zip(layer.tops, loss_weight(layer)):
            if weight:
                terms.append((net.blobs[top].name, weight))
    return terms


def share_trained_layers(test_net, test_gm, train_net, train_gm):
    """Net::ShareTrainedLayersWith: a test layer whose name the train net has uses the
    train layer's blobs (the same tensors, so updates show at once)."""
    from compiler.backends import torch_weights
    train = {layer.name: slots for layer, slots in torch_weights.net_blob_slots(train_net, train_gm)}
    inverse = {caffe: mod for mod, caffe in record_of(test_gm).layer_names.items()}
    for layer, slots in torch_weights.net_blob_slots(test_net, test_gm):
        source = train.get(layer.name)
        if source is None:
            continue
        if len(source) != len(slots):
            raise NetdefError(layer.file, layer.line, layer.name,
                              "the test net's layer has %d blobs, the train net's %d" % (len(slots), len(source)))
        module = test_gm.get_submodule(inverse[layer.name])
        for (attr, mine, shape), (_, theirs, their_shape) in zip(slots, source):
            if shape != their_shape:
                raise NetdefError(layer.file, layer.line, layer.name,
                                  "blob %s is %s in the test net but %s in the train net"
                                  % (attr, list(shape), list(their_shape)),
                                  "layers of one name share their blobs, as in Caffe: their shapes must agree")
            setattr(module, attr, theirs)


class Solver:
    """A Caffe solver over a compiled train net (and its test nets).

        solver = Solver("solver.prototxt", feed=ArrayFeed(arrays))
        solver.step(100); solver.snapshot(); solver.solve()

    `weights`: .caffemodel files to start from, a list or Caffe's comma-separated string
    (Caffe's --weights and the solver's `weights`: copied by layer name, in order).
    `module`: a compiled TRAIN module to train instead of the solver's train net (its
    record's net is used; the solver's net fields still give the test nets).
    `record`: keep every blob of the first forward pass (for traces).
    `max_memory`: the memory budget (bytes or "16G"; default $NETDEF_MAX_MEMORY or 16 GiB)
    that a training step of the train net, with this solver type's history, must fit."""

    def __init__(self, solver, feed=None, weights=None, device="cpu", precision="fp32",
                 channels_last=False, log=None, record=False, input_shapes=None, distributed=None,
                 test_feeds=(), module=None, max_memory=None):
        import netdef
        self.file = read_solver(solver) if isinstance(solver, (str, os.PathLike)) else solver
        self.param = self.file.param
        self.type, self.policy = check_solver(self.file)
        for warning in self.file.warnings:
            warnings.warn(str(warning), NetdefWarning)
        self.feed, self.log = feed, log
        self.test_feeds = list(test_feeds)       # one feed per test net with Input layers
        self.device = torch.device(device)
        self.precision = precision
        self.loss_scale = 2.0 ** 16 if precision == "fp16" else None
        self.good_steps = 0
        self.distributed = distributed
        if self.param.random_seed >= 0:
            # Caffe's Solver::Init: random_seed + the solver's rank, before the nets are made
            # (their fillers draw from it).
            rank = torch.distributed.get_rank() if distributed is not None else 0
            torch.manual_seed(self.param.random_seed + rank)
        weights = [w.strip() for w in weights.split(",")] if isinstance(weights, str) else list(weights or [])
        if module is not None:
            self.net, self.module = record_of(module).net, module
            if self.net.phase != "TRAIN":
                raise NetdefError(self.net.file, None, None, "the module computes the %s phase" % self.net.phase,
                                  "a solver trains a module compiled in phase TRAIN")
        else:
            self.net = build_net(self.file.train_net, input_shapes, max_memory)
            if self.type.history_sets != 1:
                # The pipeline counted SGD's one history set (validate.check_memory).
                check_memory(self.net, max_memory, self.type.history_sets)
        self.loss_terms = loss_terms(self.net)
        if not self.loss_terms:
            raise NetdefError(self.net.file, None, None, "the train net has no loss",
                              "add a loss layer (e.g. SoftmaxWithLoss), or loss_weight on a top")
        if module is None:
            outputs = "all" if record else list(dict.fromkeys(self.net.outputs + [n for n, _ in self.loss_terms]))
            self.module = netdef.compile_net(self.net, outputs=outputs)
        missing = [n for n, _ in self.loss_terms if n not in record_of(self.module).output_names]
        if missing:
            raise NetdefError(self.net.file, None, None, "the module does not return the loss blob(s) %s"
                              % ", ".join(missing), "compile it with outputs that include them")
        self.weights_report = [self._load_weights(self.net, self.module, w) for w in weights] or None
        self._place(self.module, channels_last)
        self.test_nets = []
        for source in self.file.test_nets:
            net = build_net(source, max_memory=max_memory)
            gm = netdef.compile_net(net)
            for w in weights:
                self._load_weights(net, gm, w)
            self._place(gm, channels_last)
            share_trained_layers(net, gm, self.net, self.module)
            self.test_nets.append((net, gm))
        self.params = learnable_params(self.net, self.module)
        inputs = [self.net.blobs[b] for b in self.net.inputs]
        # Images per iteration and process: the first input's batch (Caffe's data layers'
        # batch_size), times the processes under torchrun.
        world = torch.distributed.get_world_size() if distributed is not None else 1
        self.batch_size = (inputs[0].shape[0] if inputs and inputs[0].shape else 0) * world
        self.train_module = self.module
        if distributed is not None:
            self.train_module = distributed(self.module)
        self.history = [[torch.zeros_like(e.tensor, memory_format=torch.preserve_format) for e in self.params]
                        for _ in range(self.type.history_sets)]
        self.groups = {}
        for k, e in enumerate(self.params):
            self.groups.setdefault((e.lr_mult, e.decay_mult), []).append(k)
        self.iter = 0
        self.lr_state = {"current_step": 0}
        self.passes = 0                   # forward passes fed so far (the data position)
        self.requested = None             # "snapshot" / "stop" from a signal
        self.last_snapshot = None
        self.first_forward = None         # {blob: array} of the first pass when recording
        self.record = record

    @property
    def current_step(self):
        return self.lr_state["current_step"]

    def _load_weights(self, net, gm, weights):
        from netdef.api import load_weights
        return load_weights(net, gm, weights, strict=False)

    def _place(self, gm, channels_last):
        # Before any blob is shared: moving replaces buffers (BatchNorm's statistics).
        place(gm, self.device, channels_last)

    # --- one iteration --------------------------------------------------------------

    def rate(self):
        return float(np.float32(self.policy.rate(self.param, self.iter, self.lr_state)))

    def net_loss(self, out):
        """Caffe's net loss: the sum of loss_weight x every element of each loss top."""
        return sum(w * out[name].float().sum() for name, w in self.loss_terms)

    def forward_backward(self, inputs):
        """One forward and backward pass; returns (loss tensor, outputs)."""
        with autocast(self.device, self.precision):
            # Positionally: a blob name need not be a Python identifier ("input.1").
            out = self.train_module(*[inputs[n] for n in record_of(self.module).input_names])
            loss = self.net_loss(out)
        if loss.requires_grad:
            (loss * self.loss_scale if self.loss_scale else loss).backward()
        return loss.detach(), out

    def _inputs(self, j):
        names = record_of(self.module).input_names
        if names and self.feed is None:
            raise NetdefError(self.file.file, None, None, "the train net's inputs (%s) need data"
                              % ", ".join(names), "give a feed (--feed batches.npz)")
        arrays = self.feed(j) if names else {}
        return {name: torch.as_tensor(np.ascontiguousarray(arrays[name], dtype=np.float32)).to(self.device)
                for name in names}

    def step(self, iters=1, on_iteration=None):
        """Run `iters` iterations (Solver::Step). on_iteration(solver, loss, rate) is called
        after each update. Returns the list of the iterations' losses."""
        losses = []
        stop_iter = self.iter + iters
        clock = time.monotonic()
        while self.iter < stop_iter:
            for e in self.params:
                e.tensor.grad = None
            p = self.param
            if p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization):
                self.test_all()
            total = None
            for k in range(p.iter_size):
                inputs = self._inputs(self.passes)
                # Under DDP the gradients are averaged over the processes once per
                # iteration, after its last pass (the sum of averages is the average of sums).
                accumulate = self.distributed is not None and k < p.iter_size - 1
                with self.train_module.no_sync() if accumulate else contextlib.nullcontext():
                    loss, out = self.forward_backward(inputs)
                if self.record and self.first_forward is None:
                    self.first_forward = {name: v.detach().float().cpu().numpy() for name, v in out.items()}
                self.passes += 1
                total = loss if total is None else total + loss
            if self.distributed is not None:
                # Each process saw its share of the batch: the iteration's loss is their mean.
                torch.distributed.all_reduce(total)
                total = total / torch.distributed.get_world_size()
            loss = float(total) / p.iter_size
            if not math.isfinite(loss):
                raise self._non_finite(inputs, "NaN" if math.isnan(loss) else "infinite")
            rate = self.rate()
            if self.log is not None:
                # Every iteration: the log smooths the loss over average_loss iterations (Caffe's
                # UpdateSmoothedLoss) and writes Caffe's lines every `display` of them.
                now = time.monotonic()
                shown = p.display and self.iter % p.display == 0
                self.log.iteration(self.iter, loss, rate, p.iter_size * self.batch_size / (now - clock),
                                   outputs=self.output_values(out) if shown else None)
                clock = now
            self.apply_update(rate)
            losses.append(loss)
            if on_iteration is not None:
                on_iteration(self, loss, rate)
            request, self.requested = self.requested, None
            if (p.snapshot and self.iter % p.snapshot == 0) or request in ("snapshot", "stop"):
                self.snapshot()
            if request == "stop":
                break
        return losses

    def output_values(self, out):
        """Caffe's `Train net output #k` values: each output blob of the net (net.outputs:
        the tops no layer reads, losses among them) as the last forward pass left it, with
        its loss weight: [(name, tensor, loss_weight)]. Read only on display iterations:
        it waits for the device."""
        weights = dict(self.loss_terms)
        return [(name, out[name].detach().float().cpu(), weights.get(name, 0)) for name in self.net.outputs]

    def final_display(self):
        """Solver::Solve after the last iteration, when `display` divides it: one more
        forward pass of the train net (the next batch; BatchNorm's statistics move, as in
        Caffe, before the final test) and its loss, smoothed, in the log."""
        inputs = self._inputs(self.passes)
        self.passes += 1
        with torch.no_grad(), autocast(self.device, self.precision):
            out = self.module(*[inputs[n] for n in record_of(self.module).input_names])
            loss = self.net_loss(out)
        if self.log is not None:
            self.log.final_loss(self.iter, float(loss))

    def apply_update(self, rate):
        """SGDSolver::ApplyUpdate with the gradients in place: clip, normalize, regularize,
        the type's update, w -= update; then iter += 1."""
        p = self.param
        grads = [e.tensor.grad if e.tensor.grad is not None else torch.zeros_like(e.tensor)
                 for e in self.params]
        if self.loss_scale:
            if not self._unscale(grads):
                self.iter += 1
                return
        if p.clip_gradients >= 0:
            norm = math.sqrt(sum(float(n) ** 2 for n in torch._foreach_norm(grads))) if grads else 0.0
            if norm > p.clip_gradients:
                if self.log is not None:
                    self.log.info("Gradient clipping: scaling down gradients (L2 norm %g > %g) by scale "
                                  "factor %g" % (norm, p.clip_gradients, p.clip_gradients / norm))
                torch._foreach_mul_(grads, p.clip_gradients / norm)
        if p.iter_size > 1:
            torch._foreach_mul_(grads, 1.0 / p.iter_size)
        with torch.no_grad():
            for (lr_mult, decay_mult), members in self.groups.items():
                weights = [self.params[k].tensor for k in members]
                g = [grads[k] for k in members]
                decay = p.weight_decay * decay_mult
                if decay:
                    if p.regularization_type == "L2":
                        torch._foreach_add_(g, weights, alpha=decay)
                    else:
                        torch._foreach_add_(g, torch._foreach_sign(weights), alpha=decay)
                history = [[h[k] for k in members] for h in self.history]
                update = self.type.update(p, g, history, float(np.float32(rate * lr_mult)), self.iter)
                torch._foreach_sub_(weights, update)
        self.iter += 1

    def _unscale(self, grads):
        """fp16 loss scaling: divide the gradients by the scale; on an overflow skip the
        update and halve the scale, after 2000 good steps double it."""
        torch._foreach_mul_(grads, 1.0 / self.loss_scale)
        finite = all(bool(torch.isfinite(n)) for n in torch._foreach_norm(grads)) if grads else True
        if not finite:
            self.loss_scale /= 2
            self.good_steps = 0
            if self.log is not None:
                self.log.info("fp16: gradient overflow at iteration %d, loss scale now %g"
                              % (self.iter, self.loss_scale))
            return False
        self.good_steps += 1
        if self.good_steps % 2000 == 0:
            self.loss_scale *= 2
        return True

    def _non_finite(self, inputs, what):
        """The error for a non-finite loss: the iteration and the first layer whose output
        was not finite (the forward pass rerun layer by layer, without gradients)."""
        record = record_of(self.module)
        inputs = [inputs[n] for n in record.input_names]
        found = []
        placeholders = [n for n in self.module.graph.nodes if n.op == "placeholder"]
        input_of = dict(zip(placeholders, record.input_names))

        class Finder(torch.fx.Interpreter):
            """Runs the graph node by node and notes the first layer (a submodule, or a
            fused call named after its layer) or input whose value is not finite."""
            def run_node(self, node):
                result = super().run_node(node)
                if node.op == "placeholder":
                    what = "input blob '%s'" % input_of[node]
                else:
                    layer = record.layer_names.get(node.target if node.op == "call_module" else node.name)
                    what = "layer '%s'" % layer if layer else None
                values = result if isinstance(result, tuple) else (result,)
                if what and not found and any(torch.is_tensor(v) and v.is_floating_point()
                                              and not bool(torch.isfinite(v).all()) for v in values):
                    found.append(what)
                return result

        with torch.no_grad():
            Finder(self.module).run(*inputs)
        first = found[0] if found else None
        where = ("%s is the first to hold a non-finite value" % first) if first else \
            "no layer's output was non-finite when rerun"
        last = (" the last good snapshot is %s" % self.last_snapshot) if self.last_snapshot else ""
        return NetdefError(self.file.file, None, None,
                           "the loss became %s at iteration %d: %s" % (what, self.iter + 1, where),
                           "lower base_lr or set clip_gradients;" + (last or " no snapshot was written"))

    # --- testing --------------------------------------------------------------------

    def test(self, k, feed=None):
        """Solver::Test: the mean of every output of test net k over test_iter passes ->
        [(name, value)] with one entry per element, as Caffe prints them."""
        net, gm = self.test_nets[k]
        feed = feed or (self.test_feeds[k] if k < len(self.test_feeds) else None)
        sums = None
        with torch.no_grad():
            for i in range(self.param.test_iter[k]):
                inputs = {}
                names = record_of(gm).input_names
                if names:
                    if feed is None:
                        raise NetdefError(self.file.file, self.file.line("test_iter"), None,
                                          "test net #%d has inputs (%s) and no data for them"
                                          % (k, ", ".join(names)), "give --test-feed (once per test net)")
                    arrays = feed(i)
                    inputs = {n: torch.as_tensor(np.asarray(arrays[n], dtype=np.float32)).to(self.device)
                              for n in names}
                out = gm(*[inputs[n] for n in names])
                values = [(name, v.float().reshape(-1)) for name, v in out.items()]
                sums = values if sums is None else [(n, s + v) for (n, s), (_, v) in zip(sums, values)]
        if self.param.test_compute_loss and self.log is not None:
            weights = dict(loss_terms(net))
            loss = sum(weights[n] * float(t.sum()) for n, t in sums or [] if n in weights)
            self.log.info("Test loss: %g" % (loss / self.param.test_iter[k]))
        results = []
        for name, total in sums or []:
            for x in (total / self.param.test_iter[k]).tolist():
                results.append((name, x))
        return results

    def test_all(self):
        for k in range(len(self.test_nets)):
            if self.log is not None:
                self.log.info("Iteration %d, Testing net (#%d)" % (self.iter, k))
            results = self.test(k)
            if self.log is not None:
                self.log.test_output(k, results)

    # --- solve, snapshots -----------------------------------------------------------

    def solve(self, resume=None, on_iteration=None):
        """Solver::Solve: restore, train to max_iter, a last snapshot (snapshot_after_train),
        the last display (final_display) and the final test."""
        if resume:
            self.restore(resume)
        self.step(self.param.max_iter - self.iter, on_iteration)
        stopped = self.iter < self.param.max_iter
        p = self.param
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0) and not stopped:
            self.snapshot()
        if not stopped and p.display and self.iter % p.display == 0:
            self.final_display()
        if not stopped and p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        return not stopped

    def snapshot(self):
        """Write PREFIX_iter_N.caffemodel and .solverstate (and netdef's side file)."""
        if self.distributed is not None and torch.distributed.get_rank() != 0:
            return None
        path = snapshots.write(self)
        self.last_snapshot = path
        if self.log is not None:
            self.log.info("Snapshotting solver state to %s" % path)
        return path

    def restore(self, path):
        snapshots.restore(self, path)

    @contextlib.contextmanager
    def signals(self, sigint="stop", sighup="snapshot"):
        """Caffe's sigint_effect / sighup_effect while the block runs: a signal asks for a
        snapshot (and a stop), acted on after the current iteration."""
        def handler(effect):
            def on_signal(signum, frame):
                self.requested = effect
            return on_signal
        wanted = {signal.SIGINT: sigint}
        if hasattr(signal, "SIGHUP"):
            wanted[signal.SIGHUP] = sighup
        previous = {s: signal.signal(s, handler(effect)) for s, effect in wanted.items()}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

"""Batches for all data layers of a net: what `netdef run --iterations` and training feed
the module's data inputs, pass after pass.

`NetData(net, seed).batch(k)` is pass k's {blob name: array} of every data layer, made
the same way in any process. `batches(start)` yields them from pass `start` on; with
`workers` > 0 a torch DataLoader makes them in worker processes ahead of the model, at
most `prefetch` batches per worker in flight (a bounded queue: memory stays flat however
slow the model is). Under DDP, rank r of w reads global batches r, r+w, r+2w, ...: each
rank its own shard of the walk, none read twice. `wait_seconds` adds up the time the
consumer spent blocked on data, for the training log's data-wait share.
"""
import itertools
import time

from compiler.errors import NetdefError
from netdef.data.sources import SOURCES, make_source

DEFAULT_SEED = 1701


def _located(layer, call, *args):
    """Run call(*args); a NetdefError without a file gets the layer's file and line."""
    try:
        return call(*args)
    except NetdefError as e:
        if e.file is None:
            e.file, e.line = layer.file, layer.line
        if e.layer is None:
            e.layer = layer.name
        raise


class NetData:
    def __init__(self, net, seed=DEFAULT_SEED, workers=0, prefetch=2, rank=0, world=1):
        self.layers = [layer for layer in net.layers if layer.type in SOURCES]
        self.sources = [_located(layer, make_source, layer.param, net.phase) for layer in self.layers]
        self.seed, self.workers, self.prefetch = seed, workers, prefetch
        self.rank, self.world = rank, world
        self.wait_seconds = 0.0
        self._stream, self._next = None, None

    @property
    def blob_names(self):
        return [top for source in self.sources for top in source.tops]

    def batch(self, k):
        """Pass k's arrays (k from 0) for this rank: {blob name: numpy array}."""
        out = {}
        for layer, source in zip(self.layers, self.sources):
            out.update(_located(layer, source.batch, k * self.world + self.rank, self.seed))
        return out

    def batches(self, start=0):
        """Endless iterator of passes start, start+1, ... as {blob name: numpy array or
        tensor}; time spent waiting on it is added to wait_seconds."""
        it = self._loader(start) if self.workers > 0 else map(self.batch, itertools.count(start))
        while True:
            t0 = time.perf_counter()
            batch = next(it)
            self.wait_seconds += time.perf_counter() - t0
            if _ERROR in batch:
                raise NetdefError(**batch[_ERROR])
            yield batch

    def __call__(self, j):
        """Pass j's arrays, as a solver asks for them (feed(j), j counting the forward passes
        since iteration 0): consecutive passes come from one batches() stream, so workers
        prefetch them; any other j (a resumed run) starts a new stream there."""
        if j != self._next:
            self._stream = self.batches(j)
        self._next = j + 1
        return next(self._stream)

    def next_pass(self, _=None):
        """The pass after the previous one, whatever number the caller gives: a test net's
        data layer reads on where the previous test stopped, as in Caffe."""
        return self(0 if self._next is None else self._next)

    def _loader(self, start):
        from torch.utils.data import DataLoader
        from netdef.data.db import close_lmdb
        close_lmdb()
        loader = DataLoader(_Passes(self), batch_size=None, sampler=itertools.count(start),
                            num_workers=self.workers, prefetch_factor=self.prefetch,
                            persistent_workers=True)
        return iter(loader)


def attach(solver, workers=1, rank=0, world=1):
    """Feed a solver's nets from their data layers (netdef.training.solver.Solver, or any
    object with `param`, `net`, `test_nets`, `feed`, `test_feeds`): the train net's batches
    (made by `workers` processes, this rank's shard) become `solver.feed`, each test net
    with data layers reads on across tests. The seed is the solver's random_seed (Caffe's
    -1, "unseeded", takes the fixed default, so that a run repeats). Returns the train
    net's NetData, or None when the train net has no data layers."""
    seed = solver.param.random_seed if solver.param.random_seed >= 0 else DEFAULT_SEED
    train = NetData(solver.net, seed, workers, rank=rank, world=world)
    if not train.layers:
        return None
    solver.feed = train
    given = list(solver.test_feeds)
    solver.test_feeds = []
    for k, (net, _) in enumerate(solver.test_nets):
        test = NetData(net, seed)
        solver.test_feeds.append(test.next_pass if test.layers else (given[k] if k < len(given) else None))
    return train


class WaitShare:
    """The share of wall time spent waiting for a NetData's batches since the last call."""

    def __init__(self, data):
        self.data = data
        self.since, self.waited = time.perf_counter(), data.wait_seconds

    def __call__(self):
        now, waited = time.perf_counter(), self.data.wait_seconds
        share = (waited - self.waited) / max(now - self.since, 1e-9)
        self.since, self.waited = now, waited
        return share


_ERROR = "__netdef_error__"


class _Passes:
    """Map-style dataset over pass numbers. A worker's error comes back as a value: the
    DataLoader would rebuild a NetdefError from its message alone, losing its location."""

    def __init__(self, feed):
        self.feed = feed

    def __getitem__(self, k):
        try:
            return self.feed.batch(k)
        except NetdefError as e:
            return {_ERROR: e.to_dict()}

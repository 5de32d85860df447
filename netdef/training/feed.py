"""Feeding a net's inputs from arrays (`netdef train --feed batches.npz`).

An .npz holds one array per input blob; entry j along the first axis is the batch for
forward pass j (j counts every pass from the start of training: with iter_size N,
iteration k, from 1, uses entries (k-1)*N ... (k-1)*N+N-1). Under torchrun each process
takes its share of every batch (rows rank*B/W ... (rank+1)*B/W-1), so W processes together
see exactly the batch one process would.
"""

from compiler.errors import NetdefError


def read_feed(path):
    """{name: array} of an .npz, read without pickle, within the memory budget."""
    from compiler.passes.validate import memory_budget
    from netdef.npz import read_npz
    return read_npz(path, memory_budget())


class ArrayFeed:
    def __init__(self, arrays, file=None, rank=0, world=1):
        self.arrays, self.file, self.rank, self.world = arrays, file, rank, world

    def check(self, input_names, passes):
        """Located errors for missing inputs and too few entries for `passes` passes."""
        errors = []
        missing = [n for n in input_names if n not in self.arrays]
        if missing:
            errors.append(NetdefError(self.file, None, None, "no array for input blob(s) %s"
                                      % ", ".join("'%s'" % n for n in missing),
                                      "the file has %s; arrays are keyed by input blob name"
                                      % (", ".join("'%s'" % k for k in self.arrays) or "no arrays")))
        for name in input_names:
            a = self.arrays.get(name)
            if a is None:
                continue
            if a.ndim < 1 or a.shape[0] < passes:
                errors.append(NetdefError(self.file, None, None, "array '%s' holds %d entries; training "
                                          "needs %d (max_iter x iter_size forward passes)"
                                          % (name, a.shape[0] if a.ndim else 0, passes),
                                          "entry j along the first axis is the batch of forward pass j"))
            elif self.world > 1 and (a.ndim < 2 or a.shape[1] % self.world):
                errors.append(NetdefError(self.file, None, None, "array '%s': a batch of %d does not split "
                                          "over %d processes" % (name, a.shape[1] if a.ndim > 1 else 0,
                                                                 self.world)))
        return errors

    def input_shapes(self):
        """The shape of one process's batch per input (the net is shaped to it)."""
        return {n: (a.shape[1] // self.world,) + tuple(a.shape[2:]) for n, a in self.arrays.items()
                if a.ndim > 1}

    def __call__(self, j):
        """The batches of forward pass j. Past the last entry the arrays start over, as
        Caffe's data layers do at the end of their source: only Solve's last display pass
        reads there (check() makes training itself fit the arrays)."""
        out = {}
        for name, a in self.arrays.items():
            batch = a[j % len(a)]
            if self.world > 1:
                share = batch.shape[0] // self.world
                batch = batch[self.rank * share:(self.rank + 1) * share]
            out[name] = batch
        return out

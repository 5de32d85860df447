"""Caching a frozen trunk's features: one forward pass over a data set, the blob stored
with the labels, so that a head trained on the cache never runs the trunk again.

A cache is a folder: `list.txt` names its shards (one folder path a line, as an HDF5Data
source lists its files), and each shard folder holds `data.npy` (the blob, float32, rows
along axis 0) and `label.npy` (float32, one per row). .npy files open memory-mapped
(np.load(mmap_mode="r", allow_pickle=False)); nothing is pickled.
"""
import os

import numpy as np

LIST = "list.txt"
SHARD = "shard_%05d"
DATA, LABEL = "data", "label"
SHARD_BYTES = 256 << 20          # a shard holds up to this much of the blob


def write_cache(folder, batches, total, listed_as=None):
    """Write `total` rows of (data, label) batches (numpy arrays, rows along axis 0) as a
    cache in `folder` (which must exist and be empty); list.txt names the shards under
    `listed_as` (the folder's final path, when it is written elsewhere and renamed).
    Returns the number of shards."""
    shards, rows, pending = [], 0, []

    def flush():
        if not pending:
            return
        name = SHARD % len(shards)
        os.mkdir(os.path.join(folder, name))
        for key, index in ((DATA, 0), (LABEL, 1)):
            np.save(os.path.join(folder, name, key + ".npy"),
                    np.concatenate([p[index] for p in pending]).astype(np.float32, copy=False), allow_pickle=False)
        shards.append(name)
        pending.clear()

    for data, label in batches:
        take = min(len(data), total - rows)
        pending.append((data[:take], label[:take]))
        rows += take
        if sum(p[0].nbytes for p in pending) >= SHARD_BYTES:
            flush()
        if rows >= total:
            break
    flush()
    with open(os.path.join(folder, LIST), "w") as f:
        f.writelines(os.path.join(listed_as or folder, name) + "\n" for name in shards)
    return len(shards)


def read_shard(path, top):
    """One top's array of a shard folder, memory-mapped."""
    return np.load(os.path.join(path, top + ".npy"), mmap_mode="r", allow_pickle=False)

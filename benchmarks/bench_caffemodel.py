"""Caffemodel read, load and export speed on VGG-16 (553 MB of weights), against plain
file I/O of the same bytes.

The file is the golden case's recipe weights, written once under $NETDEF_BENCH_DIR
(/tmp/netdef-bench). Every contender reads it from the page cache (it was just written or
read), so the figures compare CPU work, not the disk:
- raw read: open + readinto one buffer of the file's size;
- read_caffemodel: file -> {layer: numpy arrays};
- load into module: read_caffemodel + strict matching + copy into the module's tensors;
- export: module -> .caffemodel (netdef.export), against writing the same bytes raw.
Target: reading and loading at least half the raw read speed.
"""
import argparse
import os

from common import SCRATCH, VGG16, emit, interleaved, median, recipe_caffemodel

import netdef
from compiler.frontends.caffemodel import read_caffemodel
from netdef.api import load_weights


def raw_read(path):
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    return buf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    path = recipe_caffemodel("vgg16")
    mb = path.stat().st_size / 1e6
    net = netdef.parse(VGG16)
    gm = netdef.compile_net(net)
    times = interleaved({"raw": lambda: raw_read(path), "read": lambda: read_caffemodel(path),
                         "load": lambda: load_weights(net, gm, path)}, args.rounds)
    speed = {k: mb / median(v) for k, v in times.items()}
    note = "VGG-16, %.0f MB, page cache, median of %d" % (mb, args.rounds)
    emit("caffemodel read_caffemodel", round(speed["read"]), "MB/s", "raw read", round(speed["raw"]),
         round(speed["read"] / speed["raw"], 3), 0.5, note)
    emit("caffemodel load into module", round(speed["load"]), "MB/s", "raw read", round(speed["raw"]),
         round(speed["load"] / speed["raw"], 3), 0.5, note)

    data = raw_read(path)
    out_raw, out = SCRATCH / "raw-write.bin", SCRATCH / "export.caffemodel"

    def write_raw():
        with open(out_raw, "wb") as f:
            f.write(data)

    times = interleaved({"raw": write_raw, "export": lambda: netdef.export(gm, out)}, args.rounds)
    speed = {k: mb / median(v) for k, v in times.items()}
    emit("caffemodel export", round(speed["export"]), "MB/s", "raw write", round(speed["raw"]),
         round(speed["export"] / speed["raw"], 3), None, note)
    out_raw.unlink()
    out.unlink()


if __name__ == "__main__":
    main()

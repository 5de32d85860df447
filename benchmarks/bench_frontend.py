"""Frontend and module construction times.

- frontend: netdef.parse of ResNet-152-deploy.prototxt (text -> IR -> wiring -> shapes),
  median of --rounds; the target is 150 ms.
- netdef language: zoo_defs/resnet.net parsed (the lark parse tree; target 50 ms), and
  its ResNet-152 built into Caffe layers from the tree (target 100 ms).
- construction: the torch.fx module of ResNet-50 built from the IR (torch_fx.build_module,
  Caffe's fillers included), against constructing the hand-written ResNet-50 (PyTorch's own
  initialisation), interleaved.
"""
import argparse

from common import RESNET50, RESNET152, ROOT, emit, interleaved, median

import netdef
from compiler.backends import torch_fx
from compiler.frontends import dsl
from compiler.frontends.dsl import syntax
from handwritten_resnet50 import ResNet50


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    parse_times = interleaved({"parse": lambda: netdef.parse(RESNET152)}, args.rounds)["parse"]
    ms = median(parse_times) * 1e3
    emit("frontend: parse+IR+shapes, ResNet-152", round(ms, 1), "ms", "target", 150.0,
         round(150.0 / ms, 2), 1.0)

    source = ROOT / "zoo_defs" / "resnet.net"
    text = source.read_text()
    syntax.parser()      # the grammar is compiled once per process
    times = interleaved({"parse": lambda: syntax.parse(text, str(source)),
                         "build": lambda: dsl.load_spec(source, "ResNet-152", text)}, args.rounds)
    for key, what, target in [("parse", "parse resnet.net", 50.0),
                              ("build", "parse + build ResNet-152 from resnet.net", 100.0)]:
        ms = median(times[key]) * 1e3
        emit("netdef language: %s" % what, round(ms, 1), "ms", "target", target, round(target / ms, 2), 1.0)

    net = netdef.parse(RESNET50)
    times = interleaved({"netdef": lambda: torch_fx.build_module(net), "hand": ResNet50}, args.rounds)
    ours, hand = median(times["netdef"]) * 1e3, median(times["hand"]) * 1e3
    emit("module construction, ResNet-50", round(ours, 1), "ms", "hand-written ResNet50()",
         round(hand, 1), round(hand / ours, 2), None)


if __name__ == "__main__":
    main()

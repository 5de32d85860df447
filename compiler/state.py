"""Caffe's NetState: which of a net's layers exist in a run.

A layer's include/exclude rules (NetStateRule) are tested against the phase (TRAIN or
TEST), the stages the run declares and its level (Net::FilterNet, Net::StateMeetsRule).
The three travel together, as one NetState message does in Caffe, so that every reader
and pass agrees on which net it is looking at.
"""
from dataclasses import dataclass

PHASES = ("TRAIN", "TEST")


@dataclass(frozen=True)
class NetState:
    phase: str = "TEST"
    stages: tuple = ()
    level: int = 0

    def __post_init__(self):
        # Users write phase="train" and stages=["a"]; a frozen value keeps them canonical.
        object.__setattr__(self, "phase", str(self.phase).upper())
        object.__setattr__(self, "stages", tuple(self.stages or ()))
        object.__setattr__(self, "level", int(self.level or 0))

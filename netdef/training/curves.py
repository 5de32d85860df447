"""Training curves read back from a training log: netdef's (`netdef train --log FILE`) or a
real Caffe's glog output (`caffe train ... 2> caffe.log`, or GLOG_log_dir's caffe.INFO).

The lines read are the ones Caffe's tools/extra/parse_log.py reads, matched anywhere in a
line so that a log with or without glog's prefix parses alike:

    Iteration 100 (2.5 iter/s, 40s/100 iters), loss = 0.123   (Caffe since 2016)
    Iteration 100, loss = 0.123                                (older Caffe, and the last line)
    Iteration 100, lr = 0.01
        Train net output #0: loss = 0.11 (* 1 = 0.11 loss)
    Iteration 500, Testing net (#0)
        Test net output #0: accuracy = 0.98

A test output belongs to the test net of the last `Testing net (#k)` line and the iteration
it names; a train output to the last iteration's loss line. An output that carries Caffe's
`(* w = ... loss)` note is a loss. This module does not import torch or matplotlib until
plot() is called: `netdef plot` computes nothing.
"""
import re
from dataclasses import dataclass, field

from compiler.errors import NetdefError

NUMBER = r"([-+]?(?:nan|inf|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))"
LOSS_LINE = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = " + NUMBER, re.I)
LR_LINE = re.compile(r"Iteration (\d+), lr = " + NUMBER, re.I)
TESTING_LINE = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
OUTPUT_LINE = re.compile(r"(Train|Test) net output #(\d+): (\S+) = " + NUMBER + r"( \(\* )?", re.I)


@dataclass
class Series:
    """One curve: `name` (unique within its panel), whether it is a loss, and its points."""
    name: str
    is_loss: bool = False
    iterations: list = field(default_factory=list)
    values: list = field(default_factory=list)

    def add(self, iteration, value):
        self.iterations.append(iteration)
        self.values.append(value)


@dataclass
class Curves:
    loss: Series                               # the smoothed training loss the solver displays
    lr: Series
    train_outputs: dict                        # {name: Series}
    test_outputs: dict                         # {test net index: {name: Series}}

    def empty(self):
        return not (self.loss.iterations or self.test_outputs)


def read_curves(path):
    """A training log file -> Curves. Raises NetdefError when the file cannot be read or
    holds no training or test lines."""
    try:
        with open(path, errors="replace") as f:
            curves = parse_curves(f)
    except OSError as e:
        raise NetdefError(str(path), None, None, "cannot read the log: %s" % (e.strerror or e)) from None
    if curves.empty():
        raise NetdefError(str(path), None, None, "no training iterations or test outputs in this log",
                          "netdef plot reads what 'netdef train --log FILE' writes, or Caffe's "
                          "own log (caffe train ... 2> caffe.log)")
    return curves


def parse_curves(lines):
    """Lines of a training log -> Curves."""
    loss, lr = Series("loss", True), Series("lr")
    train, tests = {}, {}
    # Outputs are keyed by (number, name) until the end, when each gets its label: its name,
    # or "name #k" where one name covers several elements (Accuracy's per-class output).
    train_points, test_points = {}, {}
    iteration, test_net, test_iteration = 0, None, None
    for line in lines:
        m = LOSS_LINE.search(line)
        if m:
            iteration = int(m.group(1))
            loss.add(iteration, float(m.group(2)))
            continue
        m = LR_LINE.search(line)
        if m:
            lr.add(int(m.group(1)), float(m.group(2)))
            continue
        m = TESTING_LINE.search(line)
        if m:
            test_iteration, test_net = int(m.group(1)), int(m.group(2))
            continue
        m = OUTPUT_LINE.search(line)
        if m:
            kind, number, name, value, loss_note = m.groups()
            if kind.lower() == "train":
                points, at = train_points, iteration
            else:
                if test_net is None:
                    continue            # a test output with no test header: not from a solver
                points, at = test_points.setdefault(test_net, {}), test_iteration
            series = points.setdefault((int(number), name), Series(name, bool(loss_note)))
            series.add(at, float(value))
    for (number, name), series in train_points.items():
        train[_label(train_points, number, name)] = series
    for net, points in test_points.items():
        tests[net] = {_label(points, number, name): series for (number, name), series in points.items()}
    for group in [train] + list(tests.values()):
        for label, series in group.items():
            series.name = label
    return Curves(loss, lr, train, tests)


def _label(points, number, name):
    return name if sum(1 for _, n in points if n == name) == 1 else "%s #%d" % (name, number)


def plot(curves, out, title=None):
    """Draw loss, lr and the test outputs against iterations into `out` (its suffix picks
    the format: .png, .svg, .pdf). Panels: losses (the smoothed training loss and every
    test output that is a loss), the learning rate, the other test outputs (accuracy).
    Needs matplotlib; raises ImportError without it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test_losses, test_scores = [], []
    for net, group in sorted(curves.test_outputs.items()):
        prefix = "test #%d " % net if len(curves.test_outputs) > 1 else "test "
        for series in group.values():
            (test_losses if series.is_loss else test_scores).append((prefix + series.name, series))
    panels = [("loss", [("train " + curves.loss.name, curves.loss)] + test_losses)]
    if curves.lr.iterations:
        panels.append(("learning rate", [("lr", curves.lr)]))
    if test_scores:
        panels.append(("test outputs", test_scores))
    panels = [p for p in panels if any(s.iterations for _, s in p[1])]

    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(8, 2.6 * len(panels) + 0.6))
    for ax, (ylabel, entries) in zip(axes[:, 0], panels):
        for label, series in entries:
            if not series.iterations:
                continue
            # A test runs at a few iterations only: mark its points so a short run shows them.
            style = "-" if series is curves.loss or series is curves.lr else "o-"
            ax.plot(series.iterations, series.values, style, label=label, markersize=3)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ylabel == "learning rate":
            positive = [v for v in curves.lr.values if v > 0]
            if positive and max(positive) > 10 * min(positive):
                ax.set_yscale("log")
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("iteration")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)

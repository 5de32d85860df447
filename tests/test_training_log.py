"""The training log (netdef/training/log.py), reading logs back (netdef/training/curves.py)
and `netdef plot`."""
import datetime
import io
import math
import re
import sys

import numpy as np
import pytest

from netdef.cli import main
from netdef.training.curves import parse_curves, read_curves
from netdef.training.log import TrainingLog

GLOG = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] ")

# An excerpt of a real Caffe 1.0 run of examples/mnist/lenet_solver.prototxt, as glog
# writes it to stderr (data layer and snapshot lines included: a parser must skip them).
CAFFE_LOG = """\
I1130 10:12:01.123456  4242 caffe.cpp:218] Using GPUs 0
I1130 10:12:01.150000  4242 solver.cpp:44] Initializing solver from parameters:
test_iter: 100
test_interval: 500
base_lr: 0.01
display: 100
max_iter: 10000
lr_policy: "inv"
I1130 10:12:01.200000  4242 solver.cpp:289] Solving LeNet
I1130 10:12:01.200010  4242 solver.cpp:290] Learning Rate Policy: inv
I1130 10:12:01.201000  4242 solver.cpp:347] Iteration 0, Testing net (#0)
I1130 10:12:02.500000  4245 data_layer.cpp:73] Restarting data prefetching from start.
I1130 10:12:02.600000  4242 solver.cpp:414]     Test net output #0: accuracy = 0.1135
I1130 10:12:02.600010  4242 solver.cpp:414]     Test net output #1: loss = 2.33421 (* 1 = 2.33421 loss)
I1130 10:12:02.620000  4242 solver.cpp:239] Iteration 0 (-1.4013e-45 iter/s, 1.41s/100 iters), loss = 2.3356
I1130 10:12:02.620010  4242 solver.cpp:258]     Train net output #0: loss = 2.3356 (* 1 = 2.3356 loss)
I1130 10:12:02.620020  4242 sgd_solver.cpp:112] Iteration 0, lr = 0.01
I1130 10:12:03.900000  4242 solver.cpp:239] Iteration 100 (78.125 iter/s, 1.28s/100 iters), loss = 0.206148
I1130 10:12:03.900010  4242 solver.cpp:258]     Train net output #0: loss = 0.206148 (* 1 = 0.206148 loss)
I1130 10:12:03.900020  4242 sgd_solver.cpp:112] Iteration 100, lr = 0.00992565
I1130 10:12:09.100000  4242 solver.cpp:347] Iteration 500, Testing net (#0)
I1130 10:12:09.900000  4242 solver.cpp:414]     Test net output #0: accuracy = 0.9732
I1130 10:12:09.900010  4242 solver.cpp:414]     Test net output #1: loss = 0.0862 (* 1 = 0.0862 loss)
I1130 10:12:09.920000  4242 solver.cpp:239] Iteration 500 (76.9 iter/s, 1.3s/100 iters), loss = 0.101
I1130 10:12:09.920010  4242 solver.cpp:258]     Train net output #0: loss = 0.0987 (* 1 = 0.0987 loss)
I1130 10:12:09.920020  4242 sgd_solver.cpp:112] Iteration 500, lr = 0.00964069
I1130 10:12:20.000000  4242 solver.cpp:464] Snapshotting to binary proto file examples/mnist/lenet_iter_1000.caffemodel
I1130 10:12:20.050000  4242 sgd_solver.cpp:284] Snapshotting solver state to binary proto file examples/mnist/lenet_iter_1000.solverstate
I1130 10:12:20.100000  4242 solver.cpp:327] Iteration 1000, loss = 0.0357
I1130 10:12:20.100000  4242 solver.cpp:347] Iteration 1000, Testing net (#0)
I1130 10:12:21.000000  4242 solver.cpp:414]     Test net output #0: accuracy = 0.9812
I1130 10:12:21.000000  4242 solver.cpp:414]     Test net output #1: loss = 0.0585 (* 1 = 0.0585 loss)
I1130 10:12:21.000000  4242 solver.cpp:332] Optimization Done.
I1130 10:12:21.000000  4242 caffe.cpp:259] Optimization Done.
"""

# Caffe before 2016 wrote the loss without the timing, and the lr line from solver.cpp.
OLD_CAFFE_LOG = """\
I0210 13:39:20.000000 25210 solver.cpp:160] Solving CaffeNet
I0210 13:39:21.381027 25210 solver.cpp:209] Iteration 20, loss = 5.97
I0210 13:39:21.381027 25210 solver.cpp:224]     Train net output #0: loss = 5.97 (* 1 = 5.97 loss)
I0210 13:39:22.381027 25210 solver.cpp:445] Iteration 20, lr = 0.01
I0210 13:39:40.000000 25210 solver.cpp:209] Iteration 40, loss = nan
I0210 13:39:40.000000 25210 solver.cpp:445] Iteration 40, lr = 1e-05
"""


def lines_of(text):
    return text.splitlines(keepends=True)


def test_smoothed_loss_is_caffes_running_then_windowed_mean():
    out = io.StringIO()
    log = TrainingLog(stream=out, average_loss=3)
    for it, loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 9.0]):
        log.iteration(it, loss, 0.1)
    curves = parse_curves(lines_of(out.getvalue()))
    # the first two: the mean so far; then the mean of the last three
    assert curves.loss.values == pytest.approx([1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    assert curves.lr.values == [0.1] * 6


def test_off_a_terminal_every_line_is_glog_and_reads_as_caffe_parsers_read_it(tmp_path):
    """Field positions and markers that tools/extra/parse_log.sh and parse_log.py use."""
    out = io.StringIO()
    log = TrainingLog(tmp_path / "train.log", stream=out, average_loss=1, display=10, net_name="LeNet")
    for it in range(25):
        if it % 20 == 0:
            log.test_output(0, [("accuracy", 0.5 + it / 100), ("loss", 1.5, 1.0)])
        log.iteration(it, 2.0 - it / 100, 0.01, images_per_s=640.0, data_wait=0.125,
                      outputs=[("loss", 2.0 - it / 100, 1.0)])
    log.close()
    text = out.getvalue()
    assert (tmp_path / "train.log").read_text() == text
    lines = text.splitlines()
    assert all(GLOG.match(line) for line in lines), text
    assert "] Solving LeNet" in lines[0]                      # where both tools take the start time
    for line in lines:                                        # extract_seconds.py's date fields
        fields = line.split()
        datetime.datetime(2026, int(fields[0][1:3]), int(fields[0][3:]),
                          *[int(float(x)) for x in fields[1].split(":")])
    loss_lines = [l for l in lines if ", loss = " in l]
    assert [float(l.split("=")[1]) for l in loss_lines] == [2.0, 1.9, 1.8]   # awk -F =, $2
    assert [l.split()[8] for l in lines if ", lr = " in l] == ["0.01"] * 3  # awk $9
    tests = [l for l in lines if "Test net output #0" in l]
    assert [l.split()[10] for l in tests] == ["0.5", "0.7"]                 # awk $11
    # the test rows' iteration numbers come from every line saying "Iteration " except
    # the loss and lr lines: only the "Testing net" lines may remain
    others = [l for l in lines if "Iteration " in l and ", loss = " not in l and ", lr = " not in l]
    assert all("Testing net" in l for l in others)
    assert "640 images/s, data wait 12.5%" in text
    assert "Train net output #0: loss = 1.9 (* 1 = 1.9 loss)" in text


def test_test_outputs_are_numbered_per_element_from_zero_for_each_test_net():
    out = io.StringIO()
    log = TrainingLog(stream=out)
    log.iteration(0, 1.0, 0.1)
    log.test_output(1, [("per_class", np.array([0.25, 0.75])), ("accuracy", 0.5), ("loss", 2.0, 0.5)])
    text = out.getvalue()
    assert "Iteration 1, Testing net (#1)" in text
    assert "Test net output #0: per_class = 0.25" in text
    assert "Test net output #1: per_class = 0.75" in text
    assert "Test net output #2: accuracy = 0.5\n" in text
    assert "Test net output #3: loss = 2 (* 0.5 = 1 loss)" in text
    curves = parse_curves(lines_of(text))
    assert sorted(curves.test_outputs[1]) == ["accuracy", "loss", "per_class #0", "per_class #1"]
    assert curves.test_outputs[1]["loss"].is_loss and not curves.test_outputs[1]["accuracy"].is_loss


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_a_progress_bar_and_the_log_file_still_gets_caffe_lines(tmp_path):
    term = Terminal()
    log = TrainingLog(tmp_path / "t.log", stream=term, average_loss=2, max_iter=4)
    log.iteration(0, 4.0, 0.5, images_per_s=100.0, data_wait=0.25)
    log.test_output(0, [("accuracy", 0.75)])
    log.iteration(3, 2.0, 0.25, images_per_s=120.0)
    log.close()
    shown = term.getvalue()
    assert not any(GLOG.match(l) for l in shown.replace("\r", "\n").splitlines())
    assert "[" + "#" * 24 + "] 4/4" in shown and "loss 3" in shown and "lr 0.25" in shown
    assert "120.0 img/s" in shown and "data wait 25%" in shown
    assert "test net #0 at iteration 1: accuracy = 0.75" in shown
    curves = read_curves(tmp_path / "t.log")
    assert curves.loss.iterations == [0, 3] and curves.loss.values == [4.0, 3.0]


def test_display_zero_writes_no_iteration_lines():
    out = io.StringIO()
    log = TrainingLog(stream=out, display=0)
    for it in range(5):
        log.iteration(it, 1.0, 0.1)
    assert "Iteration" not in out.getvalue()


def test_reads_a_real_caffe_log():
    curves = parse_curves(lines_of(CAFFE_LOG))
    assert curves.loss.iterations == [0, 100, 500, 1000]
    assert curves.loss.values == [2.3356, 0.206148, 0.101, 0.0357]
    assert curves.lr.iterations == [0, 100, 500]
    assert curves.lr.values == [0.01, 0.00992565, 0.00964069]
    assert curves.train_outputs["loss"].values == [2.3356, 0.206148, 0.0987]
    test = curves.test_outputs[0]
    assert test["accuracy"].iterations == [0, 500, 1000]
    assert test["accuracy"].values == [0.1135, 0.9732, 0.9812]
    assert test["loss"].is_loss and test["loss"].values == [2.33421, 0.0862, 0.0585]


def test_reads_an_old_caffe_log_with_nan():
    curves = parse_curves(lines_of(OLD_CAFFE_LOG))
    assert curves.loss.iterations == [20, 40]
    assert curves.loss.values[0] == 5.97 and math.isnan(curves.loss.values[1])
    assert curves.lr.values == [0.01, 1e-05]
    assert curves.test_outputs == {}


def test_a_log_with_nothing_to_plot_is_an_error(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_text("I1130 10:12:01.123456  4242 caffe.cpp:218] Using GPUs 0\n")
    assert main(["plot", str(log), "-o", str(tmp_path / "c.png")]) == 1
    assert "no training iterations or test outputs" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "absent.log"), "-o", str(tmp_path / "c.png")]) == 1
    assert not (tmp_path / "c.png").exists()


def test_plot_without_matplotlib_exits_1_and_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # makes `import matplotlib` fail
    assert main(["plot", str(log), "-o", str(tmp_path / "c.png")]) == 1
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is an optional extra (pip install 'netdef[plot]')")
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    out = tmp_path / "curves.png"
    assert main(["plot", str(log), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000


def test_a_test_header_announced_through_info_is_not_written_twice():
    out = io.StringIO()
    log = TrainingLog(stream=out)
    log.info("Iteration 5, Testing net (#0)")
    log.test_output(0, [("accuracy", 0.5)])
    log.test_output(0, [("accuracy", 0.75)], it=10)
    text = out.getvalue()
    assert text.count("Testing net (#0)") == 2 and "Iteration 10, Testing net (#0)" in text
    assert parse_curves(lines_of(text)).test_outputs[0]["accuracy"].iterations == [5, 10]

"""The training log: what `netdef train` tells the user while it trains.

Off a terminal (and always in the `--log FILE`) it writes the lines Caffe's solver writes,
in glog's format, so that Caffe's own log tools (tools/extra/parse_log.py, parse_log.sh,
plot_training_log.py) and `netdef plot` read a netdef log as they read a Caffe one:

    I1130 11:00:00.000000 12345 solver.cpp:289] Solving LeNet
    I1130 11:00:00.000000 12345 solver.cpp:347] Iteration 500, Testing net (#0)
    I1130 11:00:00.000000 12345 solver.cpp:414]     Test net output #0: accuracy = 0.98
    I1130 11:00:00.000000 12345 solver.cpp:239] Iteration 500 (2.5 iter/s, 40s/100 iters), loss = 0.123
    I1130 11:00:00.000000 12345 solver.cpp:258]     Train net output #0: loss = 0.11 (* 1 = 0.11 loss)
    I1130 11:00:00.000000 12345 sgd_solver.cpp:112] Iteration 500, lr = 0.01
    I1130 11:00:00.000000 12345 solver.cpp:327] Iteration 10000, loss = 0.0025   (after the last)

What those parsers rely on, and so what this module keeps exactly:
- every line starts with glog's `Lmmdd hh:mm:ss.uuuuuu tid file:line]` (parse_log.sh takes
  `Test net output` values as the 11th and lr as the 9th whitespace field, extract_seconds
  reads the date from the first two);
- a line `Solving NAME` comes before the first iteration: both parsers take the run's
  start time from it (so the log writes one itself if the caller has not);
- the loss is the only `=` on its line (parse_log.sh splits it at `=`);
- no other line says `Iteration ` (parse_log.sh takes the test rows' iteration numbers from
  every such line after a `Testing net` line): the throughput line below does not.

On a terminal the stream gets a progress bar instead (iteration, smoothed loss, lr,
images/s, share of time spent waiting for data), and test outputs and messages as plain
lines above it.
"""
import math
import os
import re
import sys
import time

BAR_WIDTH = 24
BAR_REFRESH = 0.1  # seconds
TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")


class TrainingLog:
    """Log of one training run.

    path: also write the Caffe-style lines to this file (`--log FILE`), on a terminal too.
    stream: where the user watches (default stderr): Caffe-style lines, or a progress bar
        when it is a terminal.
    average_loss: the solver's `average_loss`: the loss shown is the mean of the last
        `average_loss` iterations' losses, as Caffe's Solver::UpdateSmoothedLoss keeps it.
    display: the solver's `display`: Caffe writes the iteration, train output and lr lines
        every `display` iterations (0: never). Call iteration() on every iteration anyway:
        the smoothed loss needs every loss.
    max_iter: the last iteration, for the progress bar's length and time to go.
    append: add to an existing log file (a resumed run) instead of starting it afresh.
    net_name: the train net's name, for the `Solving NAME` line.
    """

    def __init__(self, path=None, stream=sys.stderr, average_loss=1, display=1, max_iter=None,
                 append=False, net_name="net"):
        if average_loss < 1:
            raise ValueError("average_loss must be at least 1 (Caffe's CHECK_GE), got %r" % average_loss)
        self.stream = stream
        self.average_loss = average_loss
        self.display = display
        self.max_iter = max_iter
        self.net_name = net_name
        self.file = open(path, "a" if append else "w") if path else None
        self.progress = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        self.losses = []
        self.seen = 0
        self.smoothed_loss = 0.0
        self.last_iter = None
        self.solving_written = False
        self.announced = None                 # test net whose header info() just wrote
        self.bar_shown = False
        self.bar_drawn = -math.inf
        self.last_display = (None, time.perf_counter())

    # -- what the solver calls ------------------------------------------------------------

    def iteration(self, it, loss, lr, images_per_s=None, data_wait=None, outputs=None):
        """Iteration `it` (Caffe's iter_: 0 for the first) finished its forward/backward passes
        with total `loss` (averaged over iter_size, not smoothed) and will update with `lr`.

        images_per_s: training throughput; data_wait: the fraction of the iteration's time
        spent waiting for input batches (0..1), as the data source measures it.
        outputs: the train net's outputs, [(name, value)] or [(name, value, loss_weight)],
        written as Caffe's `Train net output #k` lines; array values give one line per element.
        """
        self._smooth(float(loss))
        self.last_iter = it
        self._start()
        if self.progress:
            self._draw_bar(it, lr, images_per_s, data_wait)
        if not (self.display and it % self.display == 0):
            return
        start_it, start_t = self.last_display
        now = time.perf_counter()
        lapse = now - start_t
        # Caffe's iter/s: iterations since the last displayed one over the seconds between
        # them (the first display counts from the start).
        per_s = (it - (start_it if start_it is not None else it)) / (lapse or 1)
        self.last_display = (it, now)
        self._caffe_line("solver.cpp:239", "Iteration %d (%s iter/s, %ss/%d iters), loss = %s"
                         % (it, caffe_float(per_s), caffe_float(lapse), self.display, caffe_float(self.smoothed_loss)))
        for index, name, value, weight in _flatten(outputs or []):
            self._caffe_line("solver.cpp:258", "    Train net output #%d: %s = %s%s"
                             % (index, name, caffe_float(value), loss_note(value, weight)))
        self._caffe_line("sgd_solver.cpp:112", "Iteration %d, lr = %s" % (it, caffe_float(lr)))
        if images_per_s is not None or data_wait is not None:
            parts = []
            if images_per_s is not None:
                parts.append("%s images/s" % caffe_float(images_per_s))
            if data_wait is not None:
                parts.append("data wait %.1f%%" % (100 * data_wait))
            self._caffe_line("solver.cpp:239", "    Throughput: " + ", ".join(parts))

    def final_loss(self, it, loss):
        """Solver::Solve's last display: after the last iteration, when `display` divides it,
        Caffe runs one more forward pass of the train net and writes the loss smoothed with
        it (`Iteration N, loss = L`, no throughput: no iteration ran)."""
        self._smooth(float(loss))
        self._start()
        self._caffe_line("solver.cpp:327", "Iteration %d, loss = %s" % (it, caffe_float(self.smoothed_loss)))
        if self.progress:
            self._print_above_bar("iteration %d: loss %s" % (it, caffe_float(self.smoothed_loss)))

    def test_output(self, net_index, outputs, it=None):
        """Test net `net_index` (0 for the first test net) scored `outputs`: [(name, value)]
        or [(name, value, loss_weight)], each value the mean over test_iter batches.

        Caffe numbers a test net's outputs across all their elements (an output of 3 values
        takes three numbers) starting from 0 for each test net; so does this. `it` is the
        iteration the test ran at, by default Caffe's iter_ then: one past the last
        iteration logged (Caffe tests before the iteration's forward pass).
        """
        if it is None:
            it = 0 if self.last_iter is None else self.last_iter + 1
        self._start()
        if self.announced != net_index:
            self._caffe_line("solver.cpp:347", "Iteration %d, Testing net (#%d)" % (it, net_index),
                             show=False)
        self.announced = None
        shown = []
        for index, name, value, weight in _flatten(outputs):
            text = "%s = %s%s" % (name, caffe_float(value), loss_note(value, weight))
            self._caffe_line("solver.cpp:414", "    Test net output #%d: %s" % (index, text), show=False)
            shown.append(text)
        if self.progress:
            self._print_above_bar("test net #%d at iteration %d: %s" % (net_index, it, ", ".join(shown)))

    def info(self, msg):
        """Any other message (snapshots, restores, which weights came from where)."""
        if msg.startswith("Solving "):
            self.solving_written = True
        elif "Iteration " in msg:
            self._start()
        # A caller that announces the test itself (Caffe's "Iteration N, Testing net (#k)")
        # gets no second header from test_output: parse_log.sh counts those lines.
        testing = TESTING.fullmatch(msg)
        if testing:
            self.announced = int(testing.group(2))
        self._caffe_line("solver.cpp:0", msg, show=False)
        if self.progress:
            self._print_above_bar(msg)

    def close(self):
        if self.bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self.bar_shown = False
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _start(self):
        """Caffe's parsers take the start time from the `Solving NAME` line and skip what
        comes before it: write one before the first line that says `Iteration`."""
        if not self.solving_written:
            self.info("Solving " + self.net_name)

    def _smooth(self, loss):
        """Caffe's Solver::UpdateSmoothedLoss: the running mean of the first `average_loss`
        losses, then a ring buffer in which each new loss replaces the one `average_loss`
        iterations older (Caffe indexes it by iterations since the start of the run)."""
        if len(self.losses) < self.average_loss:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            index = self.seen % self.average_loss
            self.smoothed_loss += (loss - self.losses[index]) / self.average_loss
            self.losses[index] = loss
        self.seen += 1

    def _caffe_line(self, where, msg, show=True):
        """One glog-formatted line to the file, and to the stream when it is not a terminal."""
        line = _glog_prefix(where) + msg + "\n"
        if self.file is not None:
            self.file.write(line)
            self.file.flush()
        if not self.progress and self.stream is not None:
            self.stream.write(line)
            self.stream.flush()

    def _print_above_bar(self, text):
        self.stream.write("\r\x1b[K" + text + "\n")
        self.stream.flush()
        self.bar_shown = False

    def _draw_bar(self, it, lr, images_per_s, data_wait):
        """Redraw the bar at most every BAR_REFRESH seconds (and on the last iteration): a
        terminal write per iteration would cost a fast net's training measurable time."""
        done = it + 1
        now = time.perf_counter()
        if now - self.bar_drawn < BAR_REFRESH and done != self.max_iter:
            return
        self.bar_drawn = now
        if self.max_iter:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // self.max_iter)
            text = "[%s%s] %d/%d" % ("#" * filled, "." * (BAR_WIDTH - filled), done, self.max_iter)
        else:
            text = "iteration %d" % done
        text += "  loss %s  lr %s" % (caffe_float(self.smoothed_loss), caffe_float(lr))
        if images_per_s is not None:
            text += "  %.1f img/s" % images_per_s
        if data_wait is not None:
            text += "  data wait %d%%" % round(100 * data_wait)
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.bar_shown = True


def _glog_prefix(where):
    """glog's `Lmmdd hh:mm:ss.uuuuuu threadid file:line] ` in local time, severity I."""
    now = time.time()
    t = time.localtime(now)
    micros = int((now - math.floor(now)) * 1e6)
    return "I%02d%02d %02d:%02d:%02d.%06d %5d %s] " % (t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min,
                                                       t.tm_sec, micros, os.getpid(), where)


def caffe_float(value):
    """A number as C++'s ostream prints a float: 6 significant digits, no trailing zeros."""
    return "%.6g" % value


def _flatten(outputs):
    """[(name, value[, loss_weight])] -> [(k, name, element, loss_weight)], k counting every
    element of every output as Caffe's score_index does."""
    index = 0
    for entry in outputs:
        name, value = entry[0], entry[1]
        weight = entry[2] if len(entry) > 2 else 0
        values = value.reshape(-1).tolist() if hasattr(value, "reshape") else (
            list(value) if isinstance(value, (list, tuple)) else [value])
        for v in values:
            yield index, name, float(v), weight
            index += 1


def loss_note(value, weight):
    """Caffe's ` (* w = w*v loss)` suffix on an output with a loss weight. Caffe's parsers
    read the value before it and ignore the rest."""
    return " (* %s = %s loss)" % (caffe_float(weight), caffe_float(weight * value)) if weight else ""

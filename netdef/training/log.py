"""The training log: Caffe's log lines, which Caffe's own log parsers read.

    Iteration 100 (12.3 iter/s, 8.1s/100 iters), loss = 0.25
    Iteration 100, lr = 0.01
    Test net output #0: accuracy = 0.91
`average_loss` is applied by the caller (the solver smooths as Caffe's
UpdateSmoothedLoss does); this class writes to `stream` and, when given, to `path`.
"""
import sys
import time


class TrainingLog:
    def __init__(self, path=None, stream=sys.stderr, average_loss=1):
        self.stream = stream
        self.average_loss = average_loss
        self.file = open(path, "a") if path else None
        self.last = None                # (time, iteration) of the last Iteration line

    def _write(self, line):
        for out in (self.stream, self.file):
            if out is not None:
                out.write(line + "\n")
                out.flush()

    def iteration(self, it, loss, lr, images_per_s=None):
        now = time.monotonic()
        if self.last is None or it == self.last[1]:
            speed = ""
        else:
            lapse = now - self.last[0]
            speed = " (%.4g iter/s, %.4gs/%d iters)" % ((it - self.last[1]) / lapse if lapse else 0.0,
                                                       lapse, it - self.last[1])
        self.last = (now, it)
        extra = ", %.1f images/s" % images_per_s if images_per_s else ""
        self._write("Iteration %d%s, loss = %.6g%s" % (it, speed, loss, extra))
        self._write("Iteration %d, lr = %.6g" % (it, lr))

    def test_output(self, net_index, outputs):
        for k, (name, value) in enumerate(outputs):
            self._write("    Test net output #%d: %s = %.6g" % (k, name, value))

    def info(self, msg):
        self._write(msg)

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None

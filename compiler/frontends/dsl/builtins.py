"""The netdef language's builtin functions: range, letter, len, str, min, max, enumerate.

They compute on plain values only; a wrong argument is a Complaint that the interpreter
locates at the call, with the function's usage as the hint.
"""
from compiler.frontends.dsl.values import (MAX_ITERATIONS, Complaint, Enum, describe, format_value, is_int,
                                          is_number)


class Builtin:
    def __init__(self, name, fn, usage):
        self.name, self.fn, self.usage = name, fn, usage


def _range(*a):
    if not 1 <= len(a) <= 3 or not all(is_int(x) for x in a):
        raise Complaint("range takes 1 to 3 integers")
    if len(a) == 3 and a[2] == 0:
        raise Complaint("range step must not be 0")
    r = range(*a)
    try:
        n = len(r)
    except OverflowError:       # more values than a C ssize_t counts
        raise Complaint("range(%s) is too long" % ", ".join(map(str, a))) from None
    if n > MAX_ITERATIONS:
        raise Complaint("range of %d values is too long" % n)
    return list(r)


def _letter(i):
    if not is_int(i) or not 0 <= i < 26:
        raise Complaint("letter takes an integer from 0 to 25, got %s" % describe(i))
    return chr(ord("a") + i)


def _len(x):
    if not isinstance(x, (list, tuple, str)) or isinstance(x, Enum):
        raise Complaint("len takes a list or a string, got %s" % describe(x))
    return len(x)


def _minmax(fn):
    def run(*a):
        items = a[0] if len(a) == 1 and isinstance(a[0], (list, tuple)) else a
        if not items or not all(is_number(x) for x in items):
            raise Complaint("%s takes numbers" % fn.__name__)
        return fn(items)
    return run


def _enumerate(x):
    if not isinstance(x, (list, tuple)):
        raise Complaint("enumerate takes a list, got %s" % describe(x))
    return [(i, v) for i, v in enumerate(x)]


BUILTINS = {b.name: b for b in [
    Builtin("range", _range, "range(stop), range(start, stop[, step])"),
    Builtin("letter", _letter, "letter(i): 0 -> a, 1 -> b, ..."),
    Builtin("len", _len, "len(list)"),
    Builtin("str", format_value, "str(value)"),
    Builtin("min", _minmax(min), "min(a, b, ...)"),
    Builtin("max", _minmax(max), "max(a, b, ...)"),
    Builtin("enumerate", _enumerate, "enumerate(list): [(0, first), (1, second), ...]"),
]}

"""The `netdef` command. Each subcommand is a module in netdef/commands/ with
`add_parser(subparsers)` and `run(args)`; COMMANDS lists them in help order.

Exit codes: 0 ok, 1 an error in the user's input (one located message, no traceback
unless --debug), 2 bad usage.
"""
import argparse
import contextlib
import errno
import importlib
import os
import sys
import warnings

from compiler.accounting import MEMORY_ENV
from compiler.errors import NetdefError, NetdefWarning
from netdef.commands import printable
from netdef.version import __version__

COMMANDS = ["compile", "run", "train", "test", "time", "summary", "check", "draw", "convert", "data", "plot",
            "export", "finetune", "deploy", "predict", "features"]


def make_parser():
    parser = argparse.ArgumentParser(prog="netdef", description="Caffe-compatible network compiler.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version="netdef " + __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module("netdef.commands." + name)
        module.add_parser(sub).set_defaults(handler=module.run)
    return parser


def main(argv=None):
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code
    try:
        with warnings.catch_warnings(), _memory_budget(getattr(args, "max_memory", None)):
            warnings.simplefilter("always", NetdefWarning)
            warnings.showwarning = _show_warning
            return args.handler(args)
    except argparse.ArgumentTypeError as e:
        print("netdef: error: %s" % e, file=sys.stderr)
        return 2
    except NetdefError as e:
        if args.debug:
            raise
        for error in getattr(e, "errors", [e]):
            print("error: %s" % printable(str(error)), file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            raise
        # What the budget could not foresee (the machine holds less than it allows).
        print("error: out of memory; lower --max-memory (or $%s) to what this machine holds, and "
              "netdef refuses such inputs before reading them" % MEMORY_ENV, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `netdef summary NET | head`: the reader has gone, which is not an error of ours.
        # Point stdout at /dev/null so that the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if args.debug or e.errno not in (errno.ENOSPC, errno.EIO):
            raise
        # Standard output on a full or failing device (`> /dev/full`): one line, no traceback.
        print("error: cannot write the output: %s" % e.strerror, file=sys.stderr)
        return 1


@contextlib.contextmanager
def _memory_budget(size):
    """--max-memory as $NETDEF_MAX_MEMORY while the command runs: one budget for everything
    it reads, the net's blobs and the weights it loads (a .netdef's entries, the blobs a
    caffemodel fills), which the library takes from the environment where no caller passes
    a budget. Restored after, for callers of main() in one process (tests)."""
    if size is None:
        yield
        return
    previous = os.environ.get(MEMORY_ENV)
    os.environ[MEMORY_ENV] = str(size)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[MEMORY_ENV]
        else:
            os.environ[MEMORY_ENV] = previous


def console():
    """The `netdef` console script: exit with main's code, also when stdout fails at exit."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: cannot write the output: %s" % e.strerror, file=sys.stderr)
        code = code or 1
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """netdef's own warnings are about the user's files: one line on stderr, no source
    location of netdef's; others (a library's) as Python shows them."""
    if issubclass(category, NetdefWarning):
        print("warning: %s" % printable(str(message)), file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


if __name__ == "__main__":
    console()

"""The `netdef` command. Each subcommand is a module in netdef/commands/ with
`add_parser(subparsers)` and `run(args)`; COMMANDS lists them in help order.

Exit codes: 0 ok, 1 an error in the user's input (one located message, no traceback
unless --debug), 2 bad usage.
"""
import argparse
import importlib
import sys

from compiler.errors import NetdefError

COMMANDS = ["compile", "run", "test", "time", "summary", "check", "draw", "convert", "plot"]


def make_parser():
    parser = argparse.ArgumentParser(prog="netdef", description="Caffe-compatible network compiler.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
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
        return args.handler(args)
    except argparse.ArgumentTypeError as e:
        print("netdef: error: %s" % e, file=sys.stderr)
        return 2
    except NetdefError as e:
        if args.debug:
            raise
        for error in getattr(e, "errors", [e]):
            print("error: %s" % error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

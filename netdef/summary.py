"""Printing the summary of a net (see compiler/backends/summary.py for what it counts)."""
from compiler.backends.summary import format_summary, summarize

__all__ = ["format_summary", "print_summary", "summarize"]


def print_summary(net, fmt="table"):
    print(format_summary(net, fmt))

"""Which bracket was left open, for the syntax errors of both text formats.

A parser that meets a missing `)` or `}` stops far from it: at the next line, which it
reads as more arguments, or at the end of the file, or (protobuf) at the next `layer {`,
which it reads as a field of the block left open. The bracket to point at is the one
that is not closed. Matching alone finds the outermost one at the end of the file, so
the indentation decides too: a closer that begins a line closes the bracket opened on a
line indented as little as itself, and every bracket opened on a more indented line
before it was left open. The indentation is consulted only when the brackets do not
balance, so sloppy indentation in a well-bracketed file never takes the blame.
"""
from dataclasses import dataclass

CLOSES = {")": "(", "]": "[", "}": "{", ">": "<"}


@dataclass
class Bracket:
    char: str
    line: int           # 1-based
    col: int            # 1-based
    indent: int         # the indentation of the bracket's line
    starts_line: bool   # nothing but blanks before it on its line
    name: str = None    # the field or word just before an opening bracket


def bracket(char, line, col, lines, name=None):
    """A Bracket at line:col of the file whose lines are `lines`."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = len(text) - len(text.lstrip())
    return Bracket(char, line, col, indent, col - 1 <= indent, name)


def unclosed(brackets):
    """The opening Bracket that is not closed, or None when the brackets balance (or
    the first wrong one is a closer too many, which the parser reports well itself)."""
    brackets = list(brackets)
    if _match(brackets, by_indent=False) is None:
        return None
    return _match(brackets, by_indent=True) or _match(brackets, by_indent=False)


def _match(brackets, by_indent):
    stack = []
    for b in brackets:
        if b.char not in CLOSES:
            stack.append(b)
            continue
        if by_indent and b.starts_line and stack and stack[-1].indent > b.indent:
            return stack[-1]
        if not stack:
            return None
        if stack[-1].char != CLOSES[b.char]:
            return stack[-1]
        stack.pop()
    return stack[-1] if stack else None


def describe(b):
    """"'('" / "'{' of input_param"."""
    return "'%s'%s" % (b.char, " of %s" % b.name if b.name else "")

"""Parsing the netdef language: lark LALR(1) over grammar/netdef.lark, a postlexer for
newlines, the {expressions} inside strings ("res{i + 1}"), and syntax errors in words
with file:line:col and a caret under the column.

The Lark object is built once per process (about 0.1 s) and reused; parsing a file is
then a few milliseconds.
"""
import difflib

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from compiler.errors import NetdefError
from compiler.frontends import brackets
from grammar import NETDEF_GRAMMAR

# A newline after one of these cannot end a statement: the construct goes on.
_GOES_ON_AFTER = {"->", ",", "=", "(", "[", "{", "+", "-", "*", "/", "//", "%", "==", "!=",
                  "<", "<=", ">", ">=", "and", "or", "not", "as", ":", "if", "else", "in",
                  "return", "import"}
# A newline before one of these cannot end a statement either: `-> relu` on the next line
# continues the chain, `as` names the layer before, `else` continues the `if`, `}` closes
# the body anyway.
_GOES_ON_BEFORE = {"->", "as", "else", "}", ")", "]"}
# A `{` after one of these opens a message literal ({type="xavier"}), not a body.
_MESSAGE_AFTER = {"=", "(", ",", "[", ":"}


class _Newlines:
    """Keeps the newlines that end statements and drops the rest (see grammar/netdef.lark)."""
    always_accept = ("_NL",)

    def process(self, stream):
        open_ = []          # "(" "[" "message" "body" for each bracket now open
        prev = None         # the last token passed on
        pending = None      # a newline held back until the next token shows if it counts
        for tok in stream:
            if tok.type == "_NL":
                inside = open_ and open_[-1] != "body"
                if not inside and prev is not None and _punct(prev) not in _GOES_ON_AFTER:
                    pending = pending or tok
                continue
            value = _punct(tok)
            if pending is not None:
                if value not in _GOES_ON_BEFORE:
                    yield pending
                pending = None
            if value in ("(", "["):
                open_.append(value)
            elif value == "{":
                open_.append("message" if prev is not None and _punct(prev) in _MESSAGE_AFTER else "body")
            elif value in (")", "]", "}") and open_:
                open_.pop()
            yield tok
            prev = tok


def _punct(tok):
    """The token's text if it is punctuation or a keyword, else None (names, numbers and
    strings never stand for an operator, whatever their text)."""
    return None if tok.type in ("NAME", "INT", "FLOAT", "SHAPE", "STRING") else tok.value


_PARSER = None


def parser():
    global _PARSER
    if _PARSER is None:
        _PARSER = Lark(NETDEF_GRAMMAR.read_text(), parser="lalr", lexer="basic",
                       start=["start", "expr"], postlex=_Newlines(), propagate_positions=True,
                       maybe_placeholders=False)
    return _PARSER


def source_excerpt(lines, line, col):
    """The source line and a caret under `col` (1-based), as the messages show them."""
    if not line or not 0 < line <= len(lines):
        return ""
    text = lines[line - 1].rstrip("\n")
    caret = " " * (max(col or 1, 1) - 1) + "^"
    return "\n  | %s\n  | %s" % (text.replace("\t", " "), caret)


def located(file, lines, line, col, message, hint=None):
    """A NetdefError at file:line:col, its message followed by the source line and a caret."""
    return NetdefError(file, line, None, message + source_excerpt(lines, line, col), hint, col=col)


def parse(text, file, start="start", line_offset=0, col_offset=0, lines=None):
    """Text -> lark tree; syntax errors become NetdefErrors. The offsets place a template's
    expression ("res{i + 1}") at its position inside the string in the file."""
    template = lines is not None
    lines = lines if template else text.splitlines()
    try:
        return parser().parse(text, start=start)
    except UnexpectedInput as e:
        if template:
            line = line_offset + 1
            col = col_offset + (e.column if e.column and e.column > 0 else len(text) + 1)
        else:
            line = e.line if e.line and e.line > 0 else len(lines) or 1
            col = e.column if e.column and e.column > 0 else 1
        end = "end of the {...} expression" if template else "end of file"
        message, hint = _describe(e, text, end)
        found = None if template else _brackets(text, lines)
        opened = brackets.unclosed(found) if found else None
        if opened is not None and (opened.line, opened.col) <= (line, col):
            # The parser stops where the open bracket makes the text wrong (the next line
            # read as more arguments, or the end of the file), not at the bracket.
            raise located(file, lines, opened.line, opened.col, "syntax error: %s is not closed"
                          % brackets.describe(opened), "the parser stopped at line %d: %s" % (line, message)) from None
        raise located(file, lines, line, col, "syntax error: " + message, hint) from None


# The statements whose body a `{` opens: a bracket left open is named after them.
_BODY_KEYWORDS = {"net", "block", "for", "if", "else", "phase"}


def _brackets(text, lines):
    """The brackets of the source, as the lexer sees them (outside strings and comments),
    each opening one named after what it opens: conv(, block bottleneck {. None where the
    text does not lex (a character the language has not: that is the error to report)."""
    found = []
    line_words = {}     # line -> its first two tokens
    previous = None
    try:
        for tok in parser().lex(text):
            words = line_words.setdefault(tok.line, [])
            if len(words) < 2:
                words.append(tok)
            if tok.value in "()[]{}" and tok.type != "STRING":
                name = None
                if tok.value == "{" and words[0].value in _BODY_KEYWORDS:
                    name = words[0].value
                    if name in ("net", "block") and len(words) > 1:
                        name += " " + words[1].value
                elif tok.value in "([" and previous is not None and previous.type == "NAME":
                    name = previous.value
                found.append(brackets.bracket(tok.value, tok.line, tok.column, lines, name))
            previous = tok
    except UnexpectedInput:
        return None
    return found


def _describe(e, text, end):
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        hint = None
        if ch in "'`":
            hint = "strings are written in double quotes: \"...\""
        return "unexpected character %r" % ch, hint
    if isinstance(e, UnexpectedEOF):
        return "unexpected %s; expected %s" % (end, _expected_words(e.expected, end)), None
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    expected = e.accepts or e.expected
    if tok.type == "$END":
        got = end
    elif tok.type == "_NL":
        got = "the end of the line"
    elif tok.type in ("NAME", "INT", "FLOAT", "SHAPE", "STRING"):
        got = "%s %s" % (_WORDS[tok.type], tok.value)
    else:
        got = "'%s'" % tok.value
    hint = None
    if tok.type == "NAME" and "EQUAL" not in expected and any(k in expected for k in ("COMMA", "RPAR")):
        hint = "separate arguments with commas"
    elif tok.value == "=" and "EQUAL" not in expected:
        hint = "compare with ==; keyword arguments are written inside a call: conv(64, k=3)"
    elif tok.type == "NAME":
        keywords = [t.pattern.value for t in parser().terminals if t.name in expected and
                    t.pattern.type == "str" and t.pattern.value.isalpha()]
        close = difflib.get_close_matches(tok.value, keywords, n=1)
        if close:
            hint = "did you mean '%s'?" % close[0]
    return "unexpected %s; expected %s" % (got, _expected_words(expected, end)), hint


_WORDS = {"NAME": "name", "INT": "number", "FLOAT": "number", "SHAPE": "shape", "STRING": "string"}
# Terminals that can start an expression, and those that can continue one: an error
# listing all of them says "an expression" / "an operator" rather than 20 symbols.
_STARTS_EXPR = {"NAME", "INT", "FLOAT", "SHAPE", "STRING", "TRUE", "FALSE", "NONE", "LSQB", "LBRACE",
                "LPAR", "MINUS", "NOT"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "LESSTHAN", "MORETHAN", "OR",
              "AND", "IF", "AS", "LPAR", "LSQB"}


def _expected_words(expected, end):
    expected = set(expected)
    names = {t.name: t.pattern for t in parser().terminals}
    words = []
    if len(expected & _STARTS_EXPR) >= 6:
        words.append("an expression")
        expected -= _STARTS_EXPR
    operators = {t for t in expected if t in _OPERATORS or t.startswith("__ANON")}
    if len(operators) >= 5:
        expected -= operators
        operators = True
    else:
        operators = False
    for t in sorted(expected):
        if t == "$END":
            words.append(end)
        elif t == "_NL":
            words.append("a new line")
        elif t in _WORDS:
            words.append("a " + _WORDS[t])
        elif t in names and names[t].type == "str":
            words.append("'%s'" % names[t].value)
        else:
            words.append(t)
    if operators:
        words.append("an operator")
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def token_pos(node):
    """(line, column) of a tree or token, 1-based."""
    if isinstance(node, Token):
        return node.line, node.column
    meta = getattr(node, "meta", None)
    if meta is not None and not meta.empty:
        return meta.line, meta.column
    for child in getattr(node, "children", ()):
        pos = token_pos(child)
        if pos != (None, None):
            return pos
    return None, None


def parse_template(tok, file, lines):
    """A string token -> its parts: "res{stage}{letter(i)}_branch2a" -> ["res", <tree>,
    <tree>, "_branch2a"], each expression parsed and placed at its position in the file.
    `lines` are the file's, for error excerpts."""
    raw = str(tok)[1:-1]
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}
    parts, text, i = [], [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            text.append(escapes.get(raw[i + 1], "\\" + raw[i + 1]))
            i += 2
        elif c in "{}" and raw[i + 1:i + 2] == c:
            text.append(c)
            i += 2
        elif c == "{":
            end = raw.find("}", i)
            if end < 0:
                raise located(file, lines, tok.line, tok.column + 1 + i,
                              "unclosed { in a string", "write {{ for a brace itself")
            if text:
                parts.append("".join(text))
                text = []
            col0 = tok.column + 1 + i
            tree = parse(raw[i + 1:end], file, start="expr", line_offset=tok.line - 1, col_offset=col0,
                         lines=lines)
            _shift(tree, tok.line - 1, col0)
            parts.append(tree)
            i = end + 1
        elif c == "}":
            raise located(file, lines, tok.line, tok.column + 1 + i,
                          "unmatched } in a string", "write }} for a brace itself")
        else:
            text.append(c)
            i += 1
    if text or not parts:
        parts.append("".join(text))
    return parts


def _shift(tree, dline, dcol):
    """Move a template expression's positions from its own text to the file."""
    for sub in tree.iter_subtrees():
        if not sub.meta.empty:
            if sub.meta.line == 1:
                sub.meta.column += dcol
            sub.meta.line += dline
        for tok in sub.children:
            if isinstance(tok, Token) and tok.line is not None:
                if tok.line == 1:
                    tok.column += dcol
                tok.line += dline

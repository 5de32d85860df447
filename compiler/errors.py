"""Errors are values with locations.

Every problem netdef reports about a user's input is a NetdefError: where it is (file,
line, column, layer), what is wrong, and a hint for fixing it. The CLI prints them in one
or two lines; passes that can find several problems raise NetdefErrors with all of them.
"""


class NetdefError(Exception):
    def __init__(self, file=None, line=None, layer=None, message="", hint=None, col=None):
        super().__init__(message)
        self.file = file
        self.line = line
        self.col = col
        self.layer = layer
        self.message = message
        self.hint = hint

    def location(self):
        parts = [str(self.file) if self.file else "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self):
        text = self.location() + ": "
        if self.layer:
            text += "layer '%s': " % self.layer
        text += self.message
        if self.hint:
            text += "\n  hint: " + self.hint
        return text

    def to_dict(self):
        return {"file": self.file and str(self.file), "line": self.line, "col": self.col,
                "layer": self.layer, "message": self.message, "hint": self.hint}


class NetdefWarning(UserWarning):
    """Something a user should know that does not stop netdef: weights that left layers
    on their filler values, layers of a weights file that matched nothing. Python shows
    it through the warnings module; the CLI prints it on stderr, one line each."""


class NetdefErrors(NetdefError):
    """Several independent problems found in one pass (validation reports them all)."""

    def __init__(self, errors):
        errors = list(errors)
        first = errors[0]
        super().__init__(first.file, first.line, first.layer, first.message, first.hint, first.col)
        self.errors = errors

    def __str__(self):
        return "\n".join(str(e) for e in self.errors)

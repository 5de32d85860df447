"""A registry of definitions by name, as Caffe's SolverRegistry: one for solver types, one
for lr policies. A user's definition registers like a built-in one."""
import difflib


class Registry:
    def __init__(self, kind):
        self.kind = kind            # "solver type", "lr policy": for messages
        self._defs = {}

    def register(self, defn, replace=False):
        if defn.name in self._defs and not replace:
            raise ValueError("%s %r is already registered (pass replace=True)" % (self.kind, defn.name))
        self._defs[defn.name] = defn
        return defn

    def get(self, name):
        return self._defs.get(name)

    def names(self):
        return sorted(self._defs)

    def unknown_hint(self, name):
        """The hint for a name no definition has: the near ones (spelling or case), then all."""
        close = difflib.get_close_matches(name, self.names(), n=2, cutoff=0.5) or \
            [n for n in self.names() if n.lower() == name.lower()]
        return ("did you mean %s? " % " or ".join('"%s"' % c for c in close) if close else "") + \
            "known: " + ", ".join(self.names())

"""Caffe solver files (SolverParameter text) -> a checked SolverFile.

Read with netdef's schema, so a field Caffe does not know is refused where it stands with
a suggestion (protobuf's text parser stops at the first). Then Caffe's own preparation:
the legacy `solver_type` enum becomes `type` (UpgradeSolverType), a missing
`snapshot_prefix` is the solver's path without extension and a directory prefix gets the
solver's stem (UpgradeSnapshotPrefixProperty), and the nets are found as Solver::InitTrainNet
and InitTestNets find them:
- the train net comes from exactly one of net, net_param, train_net, train_net_param;
- test nets are the test_net_param entries, then the test_net files, then as many copies of
  net/net_param as test_iter has entries left; test_iter and test_state must fit them;
- each net's NetState is the solver default (TRAIN or TEST), merged with the net's own
  `state`, then with train_state / test_state (protobuf MergeFrom: set fields override,
  stages append).
Net paths are resolved as Caffe resolves them: against the working directory.

Which solver types and lr policies exist is the training package's registry; this module
only says where each field stands (`line(field)`) so that its errors are located too.
Fields Caffe knows that netdef does not act on are warnings (one each), not errors.
"""
import os
from dataclasses import dataclass, field

from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends.prototxt import _layer_lines, tokens, parse_net_text, parse_text, read_text_file
from compiler.proto import caffe_pb2
from compiler.state import NetState

# Fields netdef reads but does not act on, and what to use instead.
UNUSED_FIELDS = {
    "solver_mode": "the device is chosen with --device (or --gpu N)",
    "device_id": "the device is chosen with --device cuda:N (or --gpu N)",
    "debug_info": "netdef does not print per-blob debug information",
    "layer_wise_reduce": "torchrun/DistributedDataParallel chooses how gradients are reduced",
    "snapshot_diff": "snapshots hold the weights only",
}

SOLVER_TYPES_BY_ENUM = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                        "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}
TRAIN_NET_FIELDS = ("net", "net_param", "train_net", "train_net_param")

@dataclass
class NetSource:
    """One net of a solver: a file, or a NetParameter written inline in the solver."""
    what: str                       # "train_net_param", "test_net file: x.prototxt", ...
    file: str                       # the net's file (the solver's for an inline net)
    proto: object = None            # caffe_pb2.NetParameter for an inline net
    lines: dict = None              # layer lines of an inline net inside the solver file
    state: NetState = NetState("TRAIN")


@dataclass
class SolverFile:
    param: object                   # caffe_pb2.SolverParameter, upgraded
    file: str
    lines: dict                     # top-level field name -> [line numbers]
    train_net: NetSource = None
    test_nets: list = field(default_factory=list)
    warnings: list = field(default_factory=list)      # NetdefError values, not raised

    def line(self, name):
        return (self.lines.get(name) or [None])[0]

    def error(self, name, message, hint=None):
        return NetdefError(self.file, self.line(name), None, message, hint)


def _field_spans(text):
    """{top-level field: [(line, start, end)]}: where each field of the solver is written,
    and for blocks the text between its braces (start/end offsets, else None)."""
    spans = {}
    depth, pending, opened = 0, None, []
    for m, line, _ in tokens(text):
        tok = m.group()
        if tok in "{<":
            if depth == 0 and pending:
                opened.append((pending, m.end()))
            depth += 1
            pending = None
        elif tok in "}>":
            depth -= 1
            if depth == 0 and opened:
                (name, ln), start = opened.pop()
                spans.setdefault(name, []).append((ln, start, m.start()))
        elif depth == 0 and tok[0] not in "#\"'":
            pending = (tok, line)
            if text[m.end():].lstrip(" \t").startswith(":"):
                spans.setdefault(tok, []).append((line, None, None))
                pending = None
    return spans


def read_solver(path, text=None):
    """Read and check a solver file. Raises NetdefErrors with every problem found."""
    file = str(path)
    if text is None:
        text = read_text_file(path)
    param = parse_text(text, file, caffe_pb2.SolverParameter())
    spans = _field_spans(text)
    lines = {name: [s[0] for s in v] for name, v in spans.items()}
    solver = SolverFile(param, file, lines)
    errors = []
    for name, why in UNUSED_FIELDS.items():
        if param.HasField(name):
            solver.warnings.append(NetdefError(file, solver.line(name), None,
                                               "'%s' is read but not used: %s" % (name, why)))
    if param.HasField("solver_type"):
        legacy = SOLVER_TYPES_BY_ENUM[caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)]
        if param.HasField("type"):
            errors.append(solver.error("solver_type", "both solver_type (%s, the legacy enum) and type "
                                       "(\"%s\") are given; Caffe refuses this" % (legacy, param.type),
                                       "keep type: \"%s\"" % param.type))
        else:
            param.type = legacy
        param.ClearField("solver_type")
    _snapshot_prefix(solver, errors)
    _schedule_checks(solver, errors)
    _nets(solver, text, spans, errors)
    if errors:
        raise NetdefErrors(errors)
    return solver


def _snapshot_prefix(solver, errors):
    """Caffe's UpgradeSnapshotPrefixProperty, and CheckSnapshotWritePermissions made a
    located error: the folder snapshots go to must exist."""
    p = solver.param
    if not p.HasField("snapshot_prefix"):
        p.snapshot_prefix = os.path.splitext(solver.file)[0]
    elif os.path.isdir(p.snapshot_prefix):
        p.snapshot_prefix = os.path.join(p.snapshot_prefix,
                                         os.path.splitext(os.path.basename(solver.file))[0])
    folder = os.path.dirname(p.snapshot_prefix) or "."
    if not os.path.isdir(folder):
        errors.append(solver.error("snapshot_prefix", "snapshot folder '%s' does not exist" % folder,
                                   "create it, or change snapshot_prefix (Caffe resolves it against "
                                   "the working directory, %s)" % os.getcwd()))


def _schedule_checks(solver, errors):
    p = solver.param
    if not p.base_lr > 0:
        errors.append(solver.error("base_lr", "base_lr must be positive, got %g" % p.base_lr
                                   if p.HasField("base_lr") else "base_lr is not set",
                                   "e.g. base_lr: 0.01"))
    if p.max_iter <= 0:
        errors.append(solver.error("max_iter", "max_iter must be positive, got %d" % p.max_iter
                                   if p.HasField("max_iter") else "max_iter is not set",
                                   "the number of iterations to train, e.g. max_iter: 10000"))
    for name in ("average_loss", "iter_size"):
        if getattr(p, name) < 1:
            errors.append(solver.error(name, "%s must be at least 1, got %d" % (name, getattr(p, name))))
    for name in ("display", "snapshot", "test_interval"):
        if getattr(p, name) < 0:
            errors.append(solver.error(name, "%s must not be negative, got %d" % (name, getattr(p, name))))
    if p.regularization_type not in ("L1", "L2"):
        errors.append(solver.error("regularization_type", "unknown regularization_type \"%s\""
                                   % p.regularization_type, "use \"L2\" or \"L1\""))


def _net_file(solver, name, path, errors):
    """A net path as Caffe resolves it (against the working directory), or None."""
    if os.path.isfile(path):
        return path
    beside = os.path.join(os.path.dirname(solver.file), path)
    if not os.path.isabs(path) and os.path.isfile(beside):
        hint = ("'%s' exists beside the solver; Caffe resolves net paths against the working "
                "directory (%s): run from %s, or write the path as '%s'"
                % (beside, os.getcwd(), os.path.dirname(solver.file) or ".", beside))
    else:
        hint = "the path is resolved against the working directory, %s" % os.getcwd()
    errors.append(solver.error(name, "%s file '%s' does not exist" % (name, path), hint))
    return None


def _inline(solver, text, spans, name, index, proto, what):
    """A NetParameter written inside the solver, with the lines of its layers."""
    _, start, end = spans[name][index] if name in spans and index < len(spans[name]) else (None, None, None)
    lines = None
    if start is not None:
        offset = text.count("\n", 0, start)
        lines = {k: [v + offset for v in vs] for k, vs in _layer_lines(text[start:end]).items()}
    return NetSource(what, solver.file, proto=proto, lines=lines)


def _state(source, default_phase, net_state, override):
    """Caffe's NetState merge: the solver's default phase, then the net's own state, then
    the solver's train_state/test_state."""
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN if default_phase == "TRAIN" else caffe_pb2.TEST)
    state.MergeFrom(net_state)
    if override is not None:
        state.MergeFrom(override)
    source.state = NetState(caffe_pb2.Phase.Name(state.phase), tuple(state.stage), state.level)


def _nets(solver, text, spans, errors):
    p = solver.param
    given = [f for f in TRAIN_NET_FIELDS if p.HasField(f)]
    if not given:
        errors.append(NetdefError(solver.file, None, None, "the solver names no train net",
                                  "add one of: net: \"train_val.prototxt\", net_param { }, train_net, "
                                  "train_net_param { }"))
        return
    if len(given) > 1:
        errors.append(solver.error(given[1], "the train net is given twice (%s); Caffe takes exactly one "
                                   "of net, net_param, train_net, train_net_param" % ", ".join(given)))
        return
    sources = {}

    def net_source(name, index, what):
        if name.endswith("_param"):
            proto = getattr(p, name)[index] if name == "test_net_param" else getattr(p, name)
            return _inline(solver, text, spans, name, index, proto, what)
        path = getattr(p, name)[index] if name == "test_net" else getattr(p, name)
        if path not in sources:
            sources[path] = _net_file(solver, name, path, errors)
        return NetSource(what, sources[path]) if sources[path] else None

    train = net_source(given[0], 0, given[0])
    if train is not None:
        _state(train, "TRAIN", _own_state(train), p.train_state)
        solver.train_net = train
    generic = "net" if p.HasField("net") else "net_param" if p.HasField("net_param") else None
    explicit = len(p.test_net_param) + len(p.test_net)
    if (len(p.test_iter) < explicit) if generic else (len(p.test_iter) != explicit):
        errors.append(solver.error("test_iter", "%d test_iter values for %d test nets"
                                   % (len(p.test_iter), explicit),
                                   "give one test_iter per test_net / test_net_param"))
        return
    total = max(explicit, len(p.test_iter))
    if p.test_state and len(p.test_state) != total:
        errors.append(solver.error("test_state", "%d test_state values for %d test nets"
                                   % (len(p.test_state), total),
                                   "give test_state once per test net, or not at all"))
        return
    if total and p.test_interval <= 0:
        errors.append(solver.error("test_interval" if p.HasField("test_interval") else "test_iter",
                                   "test nets need a positive test_interval",
                                   "e.g. test_interval: 500 (test every 500 iterations)"))
    tests = [("test_net_param", i, "test_net_param") for i in range(len(p.test_net_param))]
    tests += [("test_net", i, "test_net file: %s" % p.test_net[i]) for i in range(len(p.test_net))]
    tests += [(generic, 0, "net_param" if generic == "net_param" else "net file: %s" % p.net)] \
        * (total - explicit)
    for k, (name, index, what) in enumerate(tests):
        source = net_source(name, index, what)
        if source is None:
            continue
        _state(source, "TEST", _own_state(source), p.test_state[k] if p.test_state else None)
        solver.test_nets.append(source)


def _own_state(source):
    """The `state` a prototxt net declares; netdef's own formats (.net, .netdef) keep none."""
    if source.proto is not None:
        return source.proto.state
    if os.path.splitext(source.file)[1] in (".net", ".netdef"):
        return caffe_pb2.NetState()
    proto, _, _ = parse_net_text(read_text_file(source.file), source.file)
    return proto.state

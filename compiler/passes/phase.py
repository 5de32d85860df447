"""Include/exclude rules by phase, stage and level (Caffe's Net::FilterNet), tested
against one NetState (compiler/state.py)."""
from compiler.errors import NetdefError
from compiler.proto import caffe_pb2
from compiler.state import NetState

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def rule_met(rule, state):
    """Caffe's Net::StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != PHASES[state.phase]:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stages for s in rule.stage):
        return False
    if any(s in state.stages for s in rule.not_stage):
        return False
    return True


def layer_included(param, state):
    if param.include and param.exclude:
        raise ValueError("both include and exclude rules")
    if param.include:
        return any(rule_met(r, state) for r in param.include)
    return not any(rule_met(r, state) for r in param.exclude)


def filter_phase(net, state=NetState()):
    if state.phase not in PHASES:
        raise NetdefError(net.file, None, None, "unknown phase %r" % state.phase, "use TRAIN or TEST")
    # A frontend that filtered as it read (the netdef language checks each phase's layers)
    # has already dropped some: they stay excluded.
    kept = []
    for layer in net.layers:
        try:
            if layer_included(layer.param, state):
                kept.append(layer)
            else:
                net.excluded_layers.append(layer)
        except ValueError:
            raise NetdefError(layer.file, layer.line, layer.name,
                              "a layer may have include rules or exclude rules, not both") from None
    net.layers = kept
    net.state = state
    return net

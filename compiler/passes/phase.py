"""Include/exclude rules by phase, stage and level (Caffe's Net::FilterNet)."""
from compiler.errors import NetdefError
from compiler.proto import caffe_pb2

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def rule_met(rule, phase, stages, level):
    if rule.HasField("phase") and rule.phase != PHASES[phase]:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(param, phase, stages=(), level=0):
    if param.include and param.exclude:
        raise ValueError("both include and exclude rules")
    if param.include:
        return any(rule_met(r, phase, stages, level) for r in param.include)
    return not any(rule_met(r, phase, stages, level) for r in param.exclude)


def filter_phase(net, phase="TEST", stages=(), level=0):
    if phase not in PHASES:
        raise NetdefError(net.file, None, None, "unknown phase %r" % phase, "use TRAIN or TEST")
    kept, net.excluded_layers = [], []
    for layer in net.layers:
        try:
            if layer_included(layer.param, phase, stages, level):
                kept.append(layer)
            else:
                net.excluded_layers.append(layer)
        except ValueError:
            raise NetdefError(layer.file, layer.line, layer.name,
                              "a layer may have include rules or exclude rules, not both") from None
    net.layers = kept
    net.phase = phase
    return net

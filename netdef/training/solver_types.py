"""Caffe's solver types (src/caffe/solvers/*.cpp), one definition each.

Each type turns the regularized gradient g of a group of parameters (one lr_mult and
decay_mult) into the value Caffe subtracts from them, with Caffe's formula and Caffe's
history (SGDSolver::history_, in learnable-parameter order; AdaDelta and Adam keep a
second set after the first). All of it runs as multi-tensor torch._foreach_* ops over the
group. `lr` is the local rate (policy rate x lr_mult); `t` is the number of updates so far.

  SGD        h = momentum*h + lr*g                       update h
  Nesterov   h' = momentum*h + lr*g                      update (1+momentum)*h' - momentum*h
  AdaGrad    h += g^2                                    update lr * g / (sqrt(h) + delta)
  RMSProp    h = rms_decay*h + (1-rms_decay)*g^2         update lr * g / (sqrt(h) + delta)
  AdaDelta   h1 = momentum*h1 + (1-momentum)*g^2
             u = g * sqrt((h2 + delta) / (h1 + delta))
             h2 = momentum*h2 + (1-momentum)*u^2         update lr * u
  Adam       m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2  (b1 momentum, b2 momentum2)
             update lr * sqrt(1-b2^(t+1)) / (1-b1^(t+1)) * m / (sqrt(v) + delta)

SGD's history holds lr*g, not g: a change of rate (a step of the policy) weighs only the
gradients that come after it, which is where Caffe and torch.optim.SGD differ.

A user's type: subclass SolverType and `register(MyType())`.
"""
import math

import torch

from netdef.training.registry import Registry

REGISTRY = Registry("solver type")


class SolverType:
    name = None
    history_sets = 1            # history blobs per learnable blob in the SolverState

    def check(self, p):
        """Problems with the SolverParameter `p` for this type: [(field, message, hint)]."""
        return []

    def update(self, p, grads, history, lr, t):
        """grads: the group's regularized gradients (may be overwritten); history: one list
        of tensors per history set. Returns the tensors to subtract from the parameters."""
        raise NotImplementedError


def _no_momentum(p, name):
    if p.momentum != 0:
        return [("momentum", "%s does not use momentum (Caffe requires momentum 0, got %g)"
                 % (name, p.momentum), "remove momentum, or use type: \"SGD\" or \"Nesterov\"")]
    return []


class SGD(SolverType):
    name = "SGD"

    def update(self, p, grads, history, lr, t):
        h = history[0]
        torch._foreach_mul_(h, p.momentum)
        torch._foreach_add_(h, grads, alpha=lr)
        return h


class Nesterov(SolverType):
    name = "Nesterov"

    def update(self, p, grads, history, lr, t):
        h = history[0]
        previous = torch._foreach_mul(h, -p.momentum)
        torch._foreach_mul_(h, p.momentum)
        torch._foreach_add_(h, grads, alpha=lr)
        torch._foreach_add_(previous, h, alpha=1 + p.momentum)
        return previous


class AdaGrad(SolverType):
    name = "AdaGrad"

    def check(self, p):
        return _no_momentum(p, self.name)

    def update(self, p, grads, history, lr, t):
        h = history[0]
        torch._foreach_addcmul_(h, grads, grads)
        return _scaled_by_rms(grads, h, p.delta, lr)


def _scaled_by_rms(grads, h, delta, lr):
    """lr * g / (sqrt(h) + delta), written into g."""
    denominator = torch._foreach_sqrt(h)
    torch._foreach_add_(denominator, delta)
    torch._foreach_div_(grads, denominator)
    torch._foreach_mul_(grads, lr)
    return grads


class RMSProp(SolverType):
    name = "RMSProp"

    def check(self, p):
        problems = _no_momentum(p, self.name)
        if not 0 <= p.rms_decay < 1:
            problems.append(("rms_decay", "rms_decay must be in [0, 1), got %g" % p.rms_decay, None))
        return problems

    def update(self, p, grads, history, lr, t):
        h = history[0]
        torch._foreach_mul_(h, p.rms_decay)
        torch._foreach_addcmul_(h, grads, grads, value=1 - p.rms_decay)
        return _scaled_by_rms(grads, h, p.delta, lr)


class AdaDelta(SolverType):
    name = "AdaDelta"
    history_sets = 2

    def update(self, p, grads, history, lr, t):
        h1, h2 = history
        m = p.momentum
        torch._foreach_mul_(h1, m)
        torch._foreach_addcmul_(h1, grads, grads, value=1 - m)
        numerator = torch._foreach_add(h2, p.delta)
        denominator = torch._foreach_add(h1, p.delta)
        torch._foreach_div_(numerator, denominator)
        torch._foreach_sqrt_(numerator)
        torch._foreach_mul_(grads, numerator)
        torch._foreach_mul_(h2, m)
        torch._foreach_addcmul_(h2, grads, grads, value=1 - m)
        torch._foreach_mul_(grads, lr)
        return grads


class Adam(SolverType):
    name = "Adam"
    history_sets = 2

    def update(self, p, grads, history, lr, t):
        m, v = history
        b1, b2 = p.momentum, p.momentum2
        correction = math.sqrt(1 - math.pow(b2, t + 1)) / (1 - math.pow(b1, t + 1))
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, p.delta)
        step = torch._foreach_div(m, denominator)
        torch._foreach_mul_(step, lr * correction)
        return step


register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names


for _type in (SGD(), Nesterov(), AdaGrad(), RMSProp(), AdaDelta(), Adam()):
    register(_type)

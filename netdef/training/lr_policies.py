"""Caffe's learning-rate policies (SGDSolver::GetLearningRate), one definition each.

`iter` is the number of updates done so far (Caffe's iter_: 0 in the first iteration).
The rate is computed in double and used as float32, as Caffe's Dtype rate is.
  fixed      base_lr
  step       base_lr * gamma ^ floor(iter / stepsize)
  exp        base_lr * gamma ^ iter
  inv        base_lr * (1 + gamma * iter) ^ (-power)
  multistep  base_lr * gamma ^ current_step, where current_step moves on by one when
             iter reaches the next stepvalue (at most one step per iteration, as Caffe)
  poly       base_lr * (1 - iter / max_iter) ^ power
  sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))
`current_step` is solver state (SolverState.current_step): step sets it, multistep
advances it; a resumed run continues from the saved value.

A user's policy: subclass LrPolicy and `register(MyPolicy())`.
"""
import math

from netdef.training.registry import Registry

REGISTRY = Registry("lr policy")


class LrPolicy:
    name = None

    def check(self, p):
        """Problems with the SolverParameter `p` for this policy: [(field, message, hint)]."""
        return []

    def rate(self, p, iter, state):
        """The rate of iteration index `iter`; `state` is a dict holding current_step."""
        raise NotImplementedError


def _needs_gamma(p):
    if p.gamma < 0 or not p.HasField("gamma"):
        return [("gamma", "lr_policy \"%s\" needs gamma >= 0%s" % (
            p.lr_policy, ", got %g" % p.gamma if p.HasField("gamma") else ""), "e.g. gamma: 0.1")]
    return []


def _needs_stepsize(p):
    if p.stepsize <= 0:
        return [("stepsize", "lr_policy \"%s\" needs a positive stepsize" % p.lr_policy,
                 "e.g. stepsize: 10000")]
    return []


class Fixed(LrPolicy):
    name = "fixed"

    def rate(self, p, iter, state):
        return p.base_lr


class Step(LrPolicy):
    name = "step"

    def check(self, p):
        return _needs_stepsize(p) + _needs_gamma(p)

    def rate(self, p, iter, state):
        state["current_step"] = iter // p.stepsize
        return p.base_lr * math.pow(p.gamma, state["current_step"])


class Exp(LrPolicy):
    name = "exp"

    def check(self, p):
        return _needs_gamma(p)

    def rate(self, p, iter, state):
        return p.base_lr * math.pow(p.gamma, iter)


class Inv(LrPolicy):
    name = "inv"

    def check(self, p):
        return _needs_gamma(p)

    def rate(self, p, iter, state):
        return p.base_lr * math.pow(1 + p.gamma * iter, -p.power)


class MultiStep(LrPolicy):
    name = "multistep"

    def check(self, p):
        problems = _needs_gamma(p)
        values = list(p.stepvalue)
        if not values:
            problems.append(("lr_policy", "lr_policy \"multistep\" needs stepvalue entries",
                             "e.g. stepvalue: 10000 stepvalue: 20000"))
        for a, b in zip(values, values[1:]):
            if b <= a:
                problems.append(("stepvalue", "stepvalue must increase: %d after %d" % (b, a),
                                 "list the iterations in increasing order"))
                break
        return problems

    def rate(self, p, iter, state):
        step = state.get("current_step", 0)
        if step < len(p.stepvalue) and iter >= p.stepvalue[step]:
            step += 1
        state["current_step"] = step
        return p.base_lr * math.pow(p.gamma, step)


class Poly(LrPolicy):
    name = "poly"

    def rate(self, p, iter, state):
        return p.base_lr * math.pow(1.0 - iter / p.max_iter, p.power)


class Sigmoid(LrPolicy):
    name = "sigmoid"

    def check(self, p):
        return _needs_gamma(p) + _needs_stepsize(p)

    def rate(self, p, iter, state):
        return p.base_lr * (1.0 / (1.0 + math.exp(-p.gamma * (iter - p.stepsize))))


register = REGISTRY.register
get = REGISTRY.get
names = REGISTRY.names


for _policy in (Fixed(), Step(), Exp(), Inv(), MultiStep(), Poly(), Sigmoid()):
    register(_policy)

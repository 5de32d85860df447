"""How long each layer of a compiled net takes forward and backward: `caffe time`.

Caffe's time() runs the layers one by one with a timer around each Forward and each
Backward. A compiled module is one torch.fx graph, so netdef measures in two kinds of pass:

- clean passes: the module's own forward and backward, as training runs them, timed as a
  whole: the `Average Forward pass`, `Average Backward pass` and `Average Forward-Backward`
  figures and the per-iteration lines;
- per-layer passes: the graph run node by node (a torch.fx Interpreter) with a timer
  around each node (its layer's forward time), and a hook before and after each autograd
  node that node created (its layer's backward time: the nodes that compute the gradients
  of the layer's inputs and parameters, the parameters' gradient accumulation included).
  Interpreting the graph and the hooks cost time of their own, so the per-layer figures
  add up to a little more than the clean totals; they are for seeing where time goes.

On CUDA every timer waits for the device (torch.cuda.synchronize), as Caffe's GPU timer
does with events. Inputs are zeros of the net's input shapes unless given: Caffe's time
assumes the net takes no input blobs and so runs on freshly allocated (zeroed) ones, where
a zero label is a valid class.

A BatchNorm layer whose output only a Scale reads runs inside that Scale's call (the
backend fuses the pair into one batch_norm): its time shows under the Scale layer and
`fused` names the pairs.
"""
import time
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from netdef.devices import autocast, place_inputs
from netdef.training.scoring import loss_weights


@dataclass
class Timing:
    layers: list                   # [(Caffe layer name, forward ms, backward ms)] in net order
    forward_ms: float              # clean passes, mean per iteration
    backward_ms: float
    iteration_ms: list             # clean forward + backward of each iteration
    initial_loss: float
    fused: dict = field(default_factory=dict)   # {BatchNorm layer: the Scale layer it runs in}

    @property
    def forward_backward_ms(self):
        return sum(self.iteration_ms) / len(self.iteration_ms)


def time_net(gm, net, iterations, device, precision="fp32", channels_last=False, inputs=None,
             on_iteration=None):
    """Time `iterations` clean and `iterations` per-layer forward/backward passes of gm (built
    from `net`, returning outputs_with_losses(net)). on_iteration(j, ms) sees
    each clean iteration. Returns Timing."""
    import netdef
    record = netdef.record(gm)
    if inputs is None:
        inputs = {net.blobs[t].name: torch.zeros(net.blobs[t].shape) for t in net.inputs}
    inputs = place_inputs(inputs, device, channels_last)
    weights = loss_weights(net)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    params = [p for p in gm.parameters() if p.requires_grad]

    args = [inputs[name] for name in record.input_names]

    def forward(run):
        with autocast(device, precision):
            out = run(*args)
        return out, _objective(out, weights)

    def backward(out, objective):
        if objective is not None:
            objective.backward()
        else:
            # A net without a loss (a deploy net): seed every output with ones, so each layer's
            # backward runs as it does under caffe time, which calls every layer's Backward.
            outs = [v for v in out.values() if v.requires_grad]
            torch.autograd.backward(outs, [torch.ones_like(v) for v in outs])

    def clear():
        for p in params:
            p.grad = None

    # Caffe's warm-up pass: allocations and the first-call costs stay out of the figures.
    out, objective = forward(gm)
    initial_loss = float(objective.detach()) if objective is not None else 0.0
    if _needs_backward(out):
        backward(out, objective)
    del out, objective
    clear()
    sync()

    forward_total = backward_total = 0.0
    iteration_ms = []
    for j in range(iterations):
        start = time.perf_counter()
        out, objective = forward(gm)
        sync()
        middle = time.perf_counter()
        if _needs_backward(out):
            backward(out, objective)
        sync()
        end = time.perf_counter()
        del out, objective
        clear()
        forward_total += middle - start
        backward_total += end - middle
        iteration_ms.append(1000 * (end - start))
        if on_iteration is not None:
            on_iteration(j, iteration_ms[-1])

    interpreter = LayerTimer(gm, record.layer_names, sync)
    for _ in range(iterations):
        out, objective = forward(interpreter.run)
        if _needs_backward(out):
            backward(out, objective)
        sync()
        del out, objective
        interpreter.claimed.clear()
        clear()

    per_layer = []
    for layer in net.layers:
        per_layer.append((layer.name, 1000 * interpreter.forward.get(layer.name, 0.0) / iterations,
                          1000 * interpreter.backward.get(layer.name, 0.0) / iterations))
    return Timing(per_layer, 1000 * forward_total / iterations, 1000 * backward_total / iterations,
                  iteration_ms, initial_loss, interpreter.fused)


def _objective(out, weights):
    """The net's loss (sum of weight x each loss top), None for a net without one."""
    terms = [w * out[name].float().sum() for name, w in weights.items()]
    return sum(terms) if terms else None


def _needs_backward(out):
    return any(v.requires_grad for v in out.values())


class LayerTimer(fx.Interpreter):
    """Runs a netdef module node by node, adding each node's forward seconds and its
    autograd nodes' backward seconds to its Caffe layer."""

    def __init__(self, gm, layer_names, sync):
        super().__init__(gm)
        self.layer_names = layer_names          # submodule name -> Caffe layer name
        self.sync = sync
        self.forward, self.backward = {}, {}
        self.claimed = set()                    # autograd nodes hooked in this pass
        self.fused = {}

    def layer_of(self, node):
        """The Caffe layer a graph node computes: its submodule's; for the fused
        BatchNorm+Scale call, the Scale's (the last submodule it reads); getitem: its source's."""
        if node.op == "call_module":
            return self.layer_names.get(node.target)
        if node.op != "call_function":
            return None
        attrs = [a.target for a in node.args if isinstance(a, fx.Node) and a.op == "get_attr"]
        if attrs:
            layers = [self.layer_names[a] for a in attrs if a in self.layer_names]
            for other in layers[:-1]:
                self.fused[other] = layers[-1]
            return layers[-1] if layers else None
        sources = [a for a in node.args if isinstance(a, fx.Node)]
        return self.layer_of(sources[0]) if sources else None

    def run_node(self, node):
        layer = self.layer_of(node)
        if layer is None:
            return super().run_node(node)
        start = time.perf_counter()
        result = super().run_node(node)
        self.sync()
        self.forward[layer] = self.forward.get(layer, 0.0) + time.perf_counter() - start
        for t in _tensors(result):
            if t.grad_fn is not None:
                self._claim(t.grad_fn, layer)
        return result

    def _claim(self, root, layer):
        """Hook every autograd node the layer's forward created: those reachable from its
        outputs' grad_fn that no earlier layer claimed (its inputs' nodes were claimed by
        the layers that made them)."""
        stack = [root]
        while stack:
            node = stack.pop()
            if node is None or node in self.claimed:
                continue
            self.claimed.add(node)
            self._hook(node, layer)
            stack.extend(n for n, _ in node.next_functions)

    def _hook(self, node, layer):
        # The hooks hold the start time and the layer, not the node: no reference cycle
        # keeps the pass's autograd graph alive.
        started = [0.0]

        def before(grad_outputs):
            self.sync()
            started[0] = time.perf_counter()

        def after(grad_inputs, grad_outputs):
            self.sync()
            self.backward[layer] = self.backward.get(layer, 0.0) + time.perf_counter() - started[0]

        node.register_prehook(before)
        node.register_hook(after)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []

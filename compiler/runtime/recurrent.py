"""The modules of RNN, LSTM and LSTMUnit (compiler/layers/recurrent.py, which states
Caffe's equations): a loop over the timesteps, gradients by autograd. LSTM's steps and
LSTMUnit are one function, lstm_step, as Caffe's LSTM unrolls into LSTMUnit layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.layers.fillers import zeros
from compiler.runtime.inner_product import flatten_checked


def caffe_tanh(x):
    """tanh as Caffe's LSTMUnit computes it, 2 sigmoid(2x) - 1 (lstm_unit_layer.cpp), so
    that its rounding near 0 is Caffe's; the RNN's TanH layers use tanh itself."""
    return 2 * torch.sigmoid(2 * x) - 1


def lstm_step(gates, cont, c_prev):
    """(c, h) of Caffe's LSTMUnit (lstm_unit_layer.cpp): `gates` holds i', f', o', g' in
    that order along its last axis, `cont` (broadcast over that axis) scales the forget
    gate, so that 0 resets c_prev at a sequence start:
      c = cont sigmoid(f') c_prev + sigmoid(i') tanh(g'),  h = sigmoid(o') tanh(c).
    Caffe writes f as 0 where cont is 0 rather than 0 * sigmoid(f'); the product is the
    same 0 (and the same NaN for a non-finite c_prev), and so is its gradient. The caller
    detaches cont: Caffe refuses to backpropagate to it."""
    i, f, o, g = gates.chunk(4, dim=-1)
    c = cont * torch.sigmoid(f) * c_prev + torch.sigmoid(i) * caffe_tanh(g)
    return c, torch.sigmoid(o) * caffe_tanh(c)


class CaffeRecurrent(nn.Module):
    """What both layers share: the inputs, the initial states, the state kept between
    passes. input_features: D, the values per step of a stream of x; num_output: H;
    static_features: S, the values per stream of x_static, None without it;
    expose_hidden: the initial states are the last bottoms, the final ones the last tops.
    `layer`, the Caffe layer's name, names it in the error for an x of another size.

    Without expose_hidden the final states of a pass are kept (detached, as Caffe's
    gradients do not cross passes) in buffers that are not part of the state_dict, since a
    .caffemodel does not hold them either; the next pass starts from them, zeros before
    the first. They are made for `streams` (N, the net's shape) and written in place, so
    that torch.export captures the update and an exported module carries the states from
    pass to pass too. A pass with fewer streams than the last starts from the first ones
    (Caffe reshapes the blob, keeping its front), one with more from zeros (Caffe
    allocates the larger blob anew).

    The kept states are each process's own (`per_process_buffers`): Caffe's multi-GPU
    solver broadcasts the root's learnable blobs, not a layer's recurrent state, so
    under torchrun every process carries on from its own previous pass."""
    states = ()                 # the recurrent blobs, in Caffe's order
    gates = 1                   # G = gates * num_output rows of the input transform
    x_blobs = ()                # the input transform's weight and bias, x_static's weight

    def __init__(self, input_features, num_output, static_features, expose_hidden, streams, layer=None):
        super().__init__()
        self.input_features, self.num_output = input_features, num_output
        self.static_features, self.expose_hidden = static_features, expose_hidden
        self.streams, self.layer = streams, layer
        for name in self.states:
            self.register_buffer(name + "_kept", zeros((1, streams, num_output)), persistent=False)
        weight, bias, static = self.x_blobs
        setattr(self, weight, self.blob(self.gates, input_features))
        setattr(self, bias, self.blob(self.gates, None))
        if static_features is not None:
            setattr(self, static, self.blob(self.gates, static_features))

    @property
    def per_process_buffers(self):
        """The buffers a multi-process trainer must not synchronise (train.py keeps them
        out of DistributedDataParallel's broadcast of rank 0's buffers)."""
        return tuple(name + "_kept" for name in self.states)

    def blob(self, gates, columns):
        """A zero blob of gates * num_output rows (a bias when `columns` is None)."""
        rows = gates * self.num_output
        return nn.Parameter(zeros((rows, columns) if columns is not None else (rows,)))

    def extra_repr(self):
        return "%d -> %d%s%s" % (self.input_features, self.num_output,
                                 ", x_static %d" % self.static_features if self.static_features is not None else "",
                                 ", expose_hidden" if self.expose_hidden else "")

    def forward(self, x, cont, *rest):
        x = flatten_checked(x, 2, self.input_features, self.layer)
        # Caffe refuses to backpropagate to the sequence indicators.
        cont = cont.detach().to(x.dtype).unsqueeze(-1)
        n = x.shape[1]
        weight, bias, static_weight = self.x_blobs
        if self.static_features is not None:
            static = F.linear(flatten_checked(rest[0], 1, self.static_features, self.layer),
                              getattr(self, static_weight))
            rest = rest[1:]
        else:
            static = None
        if self.expose_hidden:
            # Caffe shares only the data of h0/c0 with its unrolled net: no gradient to them.
            initial = [s.detach()[0] for s in rest]
        else:
            initial = [self._kept(name, n, x) for name in self.states]
        inputs = F.linear(x, getattr(self, weight), getattr(self, bias))
        out, final = self.run(inputs, cont, static, initial)
        if self.expose_hidden:
            # Caffe's hT/cT share only data too: gradients reaching them go nowhere.
            return (out,) + tuple(s.detach().unsqueeze(0) for s in final)
        for name, s in zip(self.states, final):
            self._keep(name, s.detach().unsqueeze(0))
        return out

    def _kept(self, name, n, x):
        """The state a pass of `n` streams starts from: a copy, as the end of the pass
        overwrites the buffer, which autograd may still have to read."""
        kept = getattr(self, name + "_kept")
        if kept.shape[1] >= n:
            return kept[0, :n].clone()
        return x.new_zeros((n, self.num_output))

    def _keep(self, name, state):
        kept = getattr(self, name + "_kept")
        if kept.shape == state.shape:
            kept.copy_(state)
        else:
            setattr(self, name + "_kept", state)


class CaffeRNN(CaffeRecurrent):
    """Caffe's RNN: blobs W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o."""
    states = ("h",)
    x_blobs = ("W_xh", "b_h", "W_xh_static")

    def __init__(self, input_features, num_output, static_features, expose_hidden, streams, layer=None):
        super().__init__(input_features, num_output, static_features, expose_hidden, streams, layer)
        self.W_hh = self.blob(1, num_output)
        self.W_ho = self.blob(1, num_output)
        self.b_o = self.blob(1, None)

    def run(self, inputs, cont, static, initial):
        h = initial[0]
        hs = []
        for t in range(inputs.shape[0]):
            # Caffe's Eltwise sum adds its bottoms in order: W_hh h, W_xh x + b_h, static.
            a = F.linear(h * cont[t], self.W_hh) + inputs[t]
            h = torch.tanh(a + static if static is not None else a)
            hs.append(h)
        return torch.tanh(F.linear(torch.stack(hs), self.W_ho, self.b_o)), [h]


class CaffeLSTM(CaffeRecurrent):
    """Caffe's LSTM: blobs W_xc, b_c, [W_xc_static], W_hc; gates i, f, o, g in that order."""
    states = ("h", "c")
    gates = 4
    x_blobs = ("W_xc", "b_c", "W_xc_static")

    def __init__(self, input_features, num_output, static_features, expose_hidden, streams, layer=None):
        super().__init__(input_features, num_output, static_features, expose_hidden, streams, layer)
        self.W_hc = self.blob(4, num_output)

    def run(self, inputs, cont, static, initial):
        h, c = initial
        hs = []
        for t in range(inputs.shape[0]):
            gates = F.linear(h * cont[t], self.W_hc) + inputs[t]
            if static is not None:
                gates = gates + static
            c, h = lstm_step(gates, cont[t], c)
            hs.append(h)
        return torch.stack(hs), [h, c]


class CaffeLSTMUnit(nn.Module):
    """Caffe's LSTMUnit, one step of its LSTM: bottoms c_prev (1 x N x D), gates
    (1 x N x 4D), cont (1 x N); tops c and h (1 x N x D). No blobs, no state."""

    def forward(self, c_prev, gates, cont):
        # Caffe refuses to backpropagate to the sequence indicators.
        return lstm_step(gates, cont.detach().to(gates.dtype).unsqueeze(-1), c_prev)

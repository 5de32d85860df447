"""RNN and LSTM: Caffe's recurrent layers (RecurrentLayer, rnn_layer.cpp, lstm_layer.cpp,
lstm_unit_layer.cpp), and LSTMUnit, the step Caffe's LSTM unrolls into (below).

Bottoms, in Caffe's order:
- x (T x N x ...): T timesteps of N independent streams; the axes from 2 on are the
  features (D of them, flattened as InnerProduct with axis 2 does);
- cont (T x N): cont_t multiplies the state carried into step t, so 0 starts a new
  sequence in that stream (h_{t-1} and, for LSTM, c_{t-1} count as 0). It gets no
  gradient (Caffe refuses to backpropagate to it);
- x_static (N x ...), optional: one input per stream, added to every step through its
  own weights;
- with recurrent_param.expose_hidden, the initial states: h0 (1 x N x num_output), and
  for LSTM c0 after it.
Tops: the output over time (T x N x num_output) and, with expose_hidden, the final states
hT (and cT), 1 x N x num_output.

With N = 1 state H = num_output and G = H (RNN) or 4H (LSTM), Caffe's unrolled nets
compute, for t = 1..T:
  RNN:  h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])
        o_t = tanh(W_ho h_t + b_o)                                    (the top is o)
  LSTM: [i' f' o' g'] = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static]
        i = sigmoid(i'), f = cont_t sigmoid(f'), o = sigmoid(o'), g = tanh(g')
        c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)                     (the top is h)
The gates are in that order (i, f, o, g) along the rows of W_xc, b_c and W_hc.

The learnable blobs are those of the unrolled net in the order its layers own them,
which is the order a Caffe .caffemodel holds them in:
  RNN:  W_xh (H x D), b_h (H), [W_xh_static (H x S)], W_hh (H x H), W_ho (H x H), b_o (H)
  LSTM: W_xc (4H x D), b_c (4H), [W_xc_static (4H x S)], W_hc (4H x H)
(S: the values per stream of x_static). weight_filler fills every weight, bias_filler
every bias; unset, both are Caffe's constant 0.

Without expose_hidden the layer keeps its state between forward passes, as Caffe's does:
a pass starts from the final states of the previous one (zeros before the first), so a
long sequence can be fed in chunks with cont = 1 at the start of each chunk; gradients do
not cross passes. With expose_hidden the states come from the bottoms and go to the
tops instead; like Caffe, the layer sends no gradient to h0/c0 and takes none from hT/cT
(it shares only their data with its unrolled net).

A pass may have another batch N than the net was shaped with, as in Caffe, and also
another T (Caffe's unrolled net is fixed at T and refuses one); D and S are fixed by the
weights, and an x or x_static of another size is an error naming the layer.

recurrent_param.debug_info only makes Caffe log the unrolled net's blobs; netdef has no
unrolled net and ignores it.
"""
from compiler.layers.base import LayerDef, ShapeError, prod
from compiler.layers.fillers import fill


class RecurrentDef(LayerDef):
    """What RNN and LSTM share (Caffe's RecurrentLayer); not a type itself, as Caffe
    registers no "Recurrent" layer. Subclasses give `states` (the recurrent blobs, in
    Caffe's RecurrentInputBlobNames order), `gates` (G = gates * num_output) and the
    blob names."""
    param_field = "recurrent_param"
    conv_fc_macs = True
    dsl_positional = ("num_output",)
    states = ()
    gates = 1
    # The blob names without and with x_static, in Caffe's order (the module's attributes).
    plain_blobs = ()
    static_blobs = ()

    def draw_label(self, layer):
        p = layer.param.recurrent_param
        return "%s out%s" % (p.num_output or "?", ", hidden exposed" if p.expose_hidden else "")

    def _dims(self, layer, shapes):
        """(T, N, D, S, H): timesteps, streams, features of x, of x_static (None without
        it), num_output. Caffe's LayerSetUp and Reshape checks, as ShapeErrors."""
        p = layer.param.recurrent_param
        exposed = len(self.states) if p.expose_hidden else 0
        if not 2 + exposed <= len(shapes) <= 3 + exposed:
            raise ShapeError("%s takes x, cont, an optional x_static%s: %d to %d bottoms, got %d"
                             % (self.type, ", then %s" % " and ".join("%s0" % s for s in self.states)
                                if exposed else "", 2 + exposed, 3 + exposed, len(shapes)),
                             None if exposed else "expose_hidden: true takes the initial states as bottoms")
        want_tops = 1 + exposed
        if len(layer.tops) != want_tops:
            raise ShapeError("%s %s %d top%s, got %d" % (
                self.type, "with expose_hidden gives the output and the final states:" if exposed
                else "gives", want_tops, "s" if want_tops > 1 else "", len(layer.tops)))
        if p.num_output <= 0:
            raise ShapeError("num_output must be set and positive")
        x, cont = shapes[0], shapes[1]
        if len(x) < 2:
            raise ShapeError("x must have at least 2 axes (timesteps, streams, ...)")
        t, n = x[0], x[1]
        if tuple(cont) != (t, n):
            raise ShapeError("cont must be timesteps x streams, %s for this x" % [t, n])
        s = None
        if len(shapes) > 2 + exposed:
            static = shapes[2]
            if len(static) < 1 or static[0] != n:
                raise ShapeError("x_static must have the %d streams of x on its first axis" % n)
            s = prod(static[1:])
        h = p.num_output
        for k, name in enumerate(self.states[:exposed]):
            given = tuple(shapes[len(shapes) - exposed + k])
            if given != (1, n, h):
                raise ShapeError("%s0 must be 1 x streams x num_output, %s" % (name, [1, n, h]))
        return t, n, prod(x[2:]), s, h

    def shape(self, layer, shapes):
        t, n, _, _, h = self._dims(layer, shapes)
        return [(t, n, h)] + [(1, n, h)] * (len(layer.tops) - 1)

    def blob_attrs(self, layer, shapes):
        return self.static_blobs if self._dims(layer, shapes)[3] is not None else self.plain_blobs

    def macs(self, layer, shapes, out_shapes):
        """Per timestep (axis 0 is time), as InnerProduct with axis 2 counts; x_static's
        transform, done once per pass, is spread over the T steps."""
        t, n, d, s, h = self._dims(layer, shapes)
        static = (n * s * self.gates * h) // t if s is not None else 0
        return n * self.step_macs(d, h) + static

    def step_macs(self, d, h):
        """Multiply-accumulates of one timestep of one stream."""
        raise NotImplementedError

    def workspace_values(self, layer, shapes):
        """The input transform of every step (T x N x G), held for the whole pass."""
        t, n, _, _, h = self._dims(layer, shapes)
        return t * n * self.gates * h

    def lower(self, layer, shapes):
        from compiler.runtime import recurrent
        p = layer.param.recurrent_param
        _, n, d, s, h = self._dims(layer, shapes)
        module = getattr(recurrent, "Caffe" + self.type)(d, h, s, p.expose_hidden, n, layer.name)
        for name in self.blob_attrs(layer, shapes):
            # W_* are the weights of Caffe's InnerProducts, b_* their biases.
            fill(getattr(module, name).data, p.weight_filler if name.startswith("W") else p.bias_filler)
        return module


class RNN(RecurrentDef):
    type = "RNN"
    # Not fresh_output: its top is a tanh, whose backward reads it.
    dsl_name = "rnn"
    bottoms = (2, 4)
    tops = (1, 2)
    states = ("h",)
    plain_blobs = ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
    static_blobs = ("W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o")

    def blob_shapes(self, layer, shapes):
        _, _, d, s, h = self._dims(layer, shapes)
        return [(h, d), (h,)] + ([(h, s)] if s is not None else []) + [(h, h), (h, h), (h,)]

    def step_macs(self, d, h):
        return h * d + 2 * h * h                        # W_xh, W_hh, W_ho

    def backward_values(self, layer, shapes, out_shapes):
        """Autograd keeps per step the gated h_{t-1} and h_t, and the stacked h_t that
        W_ho reads (o_t, the top, is counted with the tops)."""
        t, n, _, _, h = self._dims(layer, shapes)
        return 3 * t * n * h


class LSTM(RecurrentDef):
    type = "LSTM"
    fresh_output = True         # its top is the stack of the h_t, which no backward reads
    dsl_name = "lstm"
    bottoms = (2, 5)
    tops = (1, 3)
    states = ("h", "c")
    gates = 4
    plain_blobs = ("W_xc", "b_c", "W_hc")
    static_blobs = ("W_xc", "b_c", "W_xc_static", "W_hc")

    def blob_shapes(self, layer, shapes):
        _, _, d, s, h = self._dims(layer, shapes)
        g = 4 * h
        return [(g, d), (g,)] + ([(g, s)] if s is not None else []) + [(g, h)]

    def step_macs(self, d, h):
        return 4 * h * (d + h)                          # W_xc, W_hc

    def backward_values(self, layer, shapes, out_shapes):
        """Autograd keeps per step the gated h_{t-1}, c_{t-1}, the four gate activations,
        f, g, sigmoid(2 c_t) and tanh(c_t): 10 values per state value."""
        t, n, _, _, h = self._dims(layer, shapes)
        return 10 * t * n * h


class LSTMUnit(LayerDef):
    """Caffe's LSTMUnit (lstm_unit_layer.cpp), one step of the LSTM above, which a net can
    also use by itself (Caffe's LSTM builds its unrolled net from them). Bottoms c_prev
    (1 x N x D), gates (1 x N x 4D: i', f', o', g' in that order, each D wide), cont
    (1 x N); tops c and h, shaped as c_prev:
      i = sigmoid(i'), f = cont sigmoid(f'), o = sigmoid(o'), g = tanh(g')
      c = f c_prev + i g,  h = o tanh(c)
    (f is 0 where cont is 0: a sequence starts over.) No parameters, no blobs. c_prev and
    the gates get gradients, cont none (Caffe refuses to backpropagate to it). Reshape's
    CHECKs are the shape errors: c_prev and the gates have 3 axes, cont 2, all start with
    1 x N, and the gates are 4 times as wide as c_prev."""
    type = "LSTMUnit"
    dsl_name = "lstm_unit"
    bottoms = (3, 3)
    tops = (2, 2)

    def shape(self, layer, shapes):
        c_prev, gates, cont = (tuple(s) for s in shapes)
        for name, s, axes in (("c_prev", c_prev, 3), ("gates", gates, 3), ("cont", cont, 2)):
            if len(s) != axes:
                raise ShapeError("%s must have %d axes, got %s" % (name, axes, list(s)))
        n = c_prev[1]
        for name, s in (("c_prev", c_prev), ("gates", gates), ("cont", cont)):
            if s[:2] != (1, n):
                raise ShapeError("%s must start with 1 x streams, %s (c_prev's), got %s"
                                 % (name, [1, n], list(s[:2])))
        if gates[2] != 4 * c_prev[2]:
            raise ShapeError("gates must be 4 x %d wide (i, f, o, g for c_prev's %d), got %d"
                             % (c_prev[2], c_prev[2], gates[2]))
        return [c_prev, c_prev]

    def backward_values(self, layer, shapes, out_shapes):
        """Autograd keeps the four gate activations, f, g, sigmoid(2 c) and tanh(c): 8
        values per value of c (c_prev, which it reads too, is a bottom)."""
        return 8 * prod(shapes[0])

    def lower(self, layer, shapes):
        from compiler.runtime.recurrent import CaffeLSTMUnit
        return CaffeLSTMUnit()


LAYERS = [RNN(), LSTM(), LSTMUnit()]

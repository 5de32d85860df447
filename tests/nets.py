"""Small nets written inline for the unit tests (the project's own tests stand alone)."""
import numpy as np
import pytest

import netdef
from compiler import pipeline
from compiler.frontends import prototxt
from compiler.state import NetState

HEADER = 'name: "t"\ninput: "data"\ninput_dim: 2\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'


def parse_text(text, phase="TEST", stages=(), level=0, input_shapes=None, file="t.prototxt"):
    """Prototxt text -> wired, shaped Net (what netdef.parse does for a file)."""
    return pipeline.build_net(prototxt.load_net(file, text=text), NetState(phase, stages, level),
                              input_shapes)


def compile_text(text, weights=None, **kw):
    """Prototxt text -> module returning every blob."""
    return netdef.compile_net(parse_text(text, **kw), weights, outputs="all")


def refused(text):
    """The NetdefError that parsing `text` raises (the test fails if none is raised)."""
    with pytest.raises(netdef.NetdefError) as e:
        parse_text(text)
    return e.value


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# A conv and an fc with weights: the net the weight-file tests break and mutate.
CONV_FC = '''name: "w"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
'''

# HEADER's input, a conv, an in-place ReLU and an fc: the small net the CLI and the weight
# tests compile, save and load.
CONV_RELU_FC = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
'''

# A net with a wiring error (line 6: conv2 reads 'conv_1') and a shape error (line 11: a sum
# of 8 and 16 channels), valid layers around them and one (after2) below the failure:
# what `check` lists and `draw` marks.
BROKEN = '''name: "broken"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "conv2" type: "Convolution" bottom: "conv_1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 } }
layer { name: "after2" type: "ReLU" bottom: "conv2" top: "after2" }
layer { name: "wide" type: "Convolution" bottom: "data" top: "wide"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "conv1" bottom: "wide" top: "sum" }
'''


def write_net(tmp_path, text, name="net.prototxt"):
    """Write a net's text into the test's folder; -> its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def inputs(**shapes):
    """Input layers, one per blob: inputs(data=(2, 3), label=(2,))."""
    return "".join('layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n'
                   % (name, name, " ".join("dim: %d" % d for d in shape))
                   for name, shape in shapes.items())


def layer(name, type_, bottoms, params="", tops=None):
    """One prototxt layer; its top is its name unless `tops` says otherwise."""
    return 'layer { name: "%s" type: "%s" %s %s %s }\n' % (
        name, type_, " ".join('bottom: "%s"' % b for b in bottoms),
        " ".join('top: "%s"' % t for t in ([name] if tops is None else tops)), params)

"""Hostile input: whatever bytes reach a frontend, the answer is a net or a NetdefError.

Hypothesis mutates real prototxts (the corpus, else the catalogue), caffemodels and DSL
text, and feeds them through the frontends and passes (and, for small valid nets, module
building, a forward pass and weight loading). Any other exception, a hang (deadlines) or
an unbounded allocation (the memory budget) fails the test. Example counts are bounded so
that the whole file runs in well under a minute.
"""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import netdef
from compiler import pipeline
from compiler.backends import draw, torch_weights
from compiler.backends.summary import summarize
from compiler.errors import NetdefError
from compiler.frontends import caffemodel, prototxt
from compiler.layers import registry
from compiler.proto import caffe_pb2
from tests.conftest import CORPUS
from tests.nets import CONV_FC

MALFORMED = Path(__file__).parent / "malformed"
SEEDS = sorted(p for p in CORPUS.rglob("*.prototxt") if "solver" not in p.name) if CORPUS.is_dir() else []
SEEDS += sorted(MALFORMED.glob("*.prototxt"))
SEED_TEXTS = [p.read_text() for p in SEEDS]
# A small valid net with most layer types: its mutants reach the shape rules, module
# building and the forward pass of every family.
ZOO = '''name: "zoo"
input: "data"
input_shape { dim: 2 dim: 4 dim: 12 dim: 12 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 1 group: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "split" type: "Split" bottom: "conv1" top: "a" top: "b" }
layer { name: "conv2" type: "Convolution" bottom: "a" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "conv2" bottom: "b" top: "sum" eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
layer { name: "norm" type: "LRN" bottom: "sum" top: "norm" lrn_param { local_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "norm" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "up" type: "Deconvolution" bottom: "pool" top: "up" convolution_param { num_output: 4 kernel_size: 4 stride: 2 } }
layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop" crop_param { axis: 2 offset: 1 } }
layer { name: "cat" type: "Concat" bottom: "crop" bottom: "data" top: "cat" concat_param { axis: 1 } }
layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 3 } }
layer { name: "mvn" type: "MVN" bottom: "s1" top: "mvn" }
layer { name: "tanh" type: "TanH" bottom: "s2" top: "s2" }
layer { name: "pow" type: "Power" bottom: "mvn" top: "pow" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "flat" type: "Flatten" bottom: "pow" top: "flat" }
layer { name: "reshape" type: "Reshape" bottom: "s2" top: "reshape" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 6 } }
layer { name: "fc2" type: "InnerProduct" bottom: "reshape" top: "fc2" inner_product_param { num_output: 6 } }
layer { name: "bias" type: "Bias" bottom: "fc" bottom: "fc2" top: "biased" bias_param { axis: 0 } }
layer { name: "tile" type: "Tile" bottom: "biased" top: "tile" tile_param { axis: 1 tiles: 2 } }
layer { name: "elu" type: "ELU" bottom: "tile" top: "tile" }
layer { name: "red" type: "Reduction" bottom: "tile" top: "red" reduction_param { operation: SUMSQ axis: 1 } }
layer { name: "argmax" type: "ArgMax" bottom: "tile" top: "argmax" argmax_param { top_k: 2 } }
layer { name: "prob" type: "Softmax" bottom: "tile" top: "prob" }
'''
# Small enough to build and run in a few milliseconds.
SMALL_PARAMS, SMALL_MEMORY = 2_000_000, 32 << 20

FAST = settings(deadline=3000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                derandomize=True)

NUMBERS = ["0", "-1", "1", "2", "3", "7", "65536", "2147483648", "4294967296", "-2147483649",
           "99999999999999999999", "1e9", "3.5", "nan", "inf", "-0"]
SMALL_NUMBERS = ["0", "1", "2", "3", "5", "8", "13"]
LAYER_TYPES = registry.known_types() + ["Python", "PriorBox", ""]
TOKENS = ["{", "}", "<", ">", ":", '"', "layer", "layers", "bottom", "top", "name", "type",
          '"data"', '"conv1"', '"Convolution"', '"Eltwise"', '"Concat"', '"InnerProduct"', '"Pooling"',
          '"Reshape"', '"Slice"', '"Crop"', '"Python"', "include { phase: TRAIN }", 'param { name: "w" }',
          "input_dim: 1", "axis: -1", "group: 3", "dilation: 0", "CONVOLUTION", "MAX", "#", "\\", "\x00"]


INSERTS = ["group: 2 ", "dilation: 2 ", "axis: 2 ", "axis: -1 ", "pad: 5 ", "stride: 3 ", "num_output: 1 ",
           "bias_term: false ", "global_pooling: true ", "operation: MAX ", "coeff: 2 ", "offset: 1 ",
           "transpose: true ", "num_axes: 0 ", "engine: CAFFE "]


def _spans(pattern, text, group=0):
    return [m.span(group) for m in re.finditer(pattern, text)]


@st.composite
def mutated_prototxt(draw, semantic):
    """A seed prototxt with 1-4 mutations. semantic=True keeps the protobuf syntax valid
    (numbers, names, types, bottoms, dropped or added fields), so the passes, the layers'
    shape rules and module building are reached; otherwise anything goes."""
    text = draw(st.one_of(st.just(ZOO), st.sampled_from(SEED_TEXTS))) if SEED_TEXTS else ZOO
    kinds = ["number", "type", "rewire", "drop_line", "insert_field"]
    if not semantic:
        kinds += ["string", "token", "delete", "duplicate", "insert"]
    for _ in range(draw(st.integers(1, 4 if not semantic else 2))):
        kind = draw(st.sampled_from(kinds))
        if kind == "number":
            spots = _spans(r"(?<=: )-?\d+(\.\d+)?\b", text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + draw(st.sampled_from(SMALL_NUMBERS if semantic else NUMBERS)) + text[b:]
        elif kind == "type":              # another layer type, same parameters
            spots = _spans(r'type:\s*"([^"\n]*)"', text, 1)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + draw(st.sampled_from(LAYER_TYPES)) + text[b:]
        elif kind == "string":            # another name or type from the same file
            spots = _spans(r'"[^"\n]*"', text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                c, d = draw(st.sampled_from(spots))
                text = text[:a] + text[c:d] + text[b:]
        elif kind == "rewire":           # point a bottom at another blob: cycles, mismatches
            bottoms = _spans(r'bottom:\s*"([^"]*)"', text, 1)
            names = re.findall(r'top:\s*"([^"]*)"', text)
            if bottoms and names:
                a, b = draw(st.sampled_from(bottoms))
                text = text[:a] + draw(st.sampled_from(names)) + text[b:]
        elif kind == "drop_line":        # a `key: value` line without braces
            spots = _spans(r"(?m)^[ \t]*\w+:[^{}\n]*\n", text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + text[b:]
        elif kind == "insert_field":
            spots = _spans(r"_param\s*\{", text)
            if spots:
                _, b = draw(st.sampled_from(spots))
                text = text[:b] + " " + draw(st.sampled_from(INSERTS)) + text[b:]
        elif kind == "token":
            spots = _spans(r'[{}:]|"[^"\n]*"|\w+', text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + draw(st.sampled_from(TOKENS)) + text[b:]
        else:
            a = draw(st.integers(0, len(text)))
            b = min(len(text), a + draw(st.integers(1, 300)))
            if kind == "delete":
                text = text[:a] + text[b:]
            elif kind == "duplicate":
                at = draw(st.integers(0, len(text)))
                text = text[:at] + text[a:b] + text[at:]
            else:
                text = text[:a] + draw(st.text(max_size=30)) + text[a:]
    return text


def exercise(net):
    """Everything a user can do with a net that validated; small nets are also built, run
    and loaded with weights of their own shapes."""
    _, totals = summarize(net)
    if totals["params"] > SMALL_PARAMS or totals["memory"] > SMALL_MEMORY:
        return
    gm = netdef.compile_net(net)
    with torch.no_grad():
        # The inputs' own values (net.shape() is a blob's last value, after in-place layers).
        inputs = {net.blobs[t].name: torch.rand(net.blobs[t].shape) for t in net.inputs}
        gm(**inputs)
    blobs = torch_weights.module_blobs(net, gm)
    netdef.compile_net(net, blobs)


def draw_text(net, errors):
    """What `netdef draw` makes of any net, broken or not (without running Graphviz)."""
    view = draw.build_view(net, errors)
    assert draw.to_dot(view, show_lr_mult=True).startswith("digraph")
    assert draw.to_dot_blocks(view).startswith("digraph")


def test_the_zoo_is_valid_and_runs():
    net = prototxt.load_net("zoo.prototxt", text=ZOO)
    assert not pipeline.check(net)
    exercise(net)


def accept_or_refuse(action):
    try:
        return action()
    except NetdefError as e:
        assert str(e)          # a message, located or not, never empty
        return None


@settings(FAST, max_examples=1000)
@given(st.one_of(mutated_prototxt(semantic=True), mutated_prototxt(semantic=False)))
def test_mutated_prototxt(text):
    def go():
        net = prototxt.load_net("mutant.prototxt", text=text)
        errors = pipeline.check(net, max_memory=1 << 30)
        draw_text(net, errors)
        if not errors:
            exercise(net)
    accept_or_refuse(go)


@settings(FAST, max_examples=500)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.lists(st.sampled_from(TOKENS + NUMBERS), max_size=40).map(" ".join)))
def test_random_text_as_prototxt(text):
    accept_or_refuse(lambda: pipeline.check(prototxt.load_net("random.prototxt", text=text)))


def test_deep_nesting_is_refused_not_a_crash():
    text = "layer { " * 20000 + "}" * 20000
    with pytest.raises(NetdefError):
        prototxt.load_net("deep.prototxt", text=text)


# ---- caffemodels ----

def _caffemodel(v1=False):
    net = caffe_pb2.NetParameter(name="w")
    for name, shapes in [("conv", [(4, 3, 3, 3), (4,)]), ("fc", [(5, 144), (5,)])]:
        layer = net.layers.add(name=name, type=caffe_pb2.V1LayerParameter.CONVOLUTION) if v1 else \
            net.layer.add(name=name, type="Convolution")
        for s in shapes:
            blob = layer.blobs.add()
            if v1:       # legacy 4-D num/channels/height/width
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - len(s)) + s
            else:
                blob.shape.dim.extend(s)
            blob.data.extend(np.linspace(-1, 1, int(np.prod(s))).tolist())
    return net.SerializeToString()


MODELS = [_caffemodel(), _caffemodel(v1=True)]


@st.composite
def mutated_caffemodel(draw):
    data = bytearray(draw(st.sampled_from(MODELS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete", "varint"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:                           # a huge or overlong varint where a length or dim was
            data[at:at] = draw(st.sampled_from([b"\xff" * 10, b"\xff\xff\xff\xff\x0f", b"\x80" * 11, b"\x00"]))
    return bytes(data)


@pytest.fixture(scope="module")
def small():
    net = prototxt.load_net("small.prototxt", text=CONV_FC)
    assert not pipeline.check(net)
    return net, netdef.compile_net(net)


@settings(FAST, max_examples=2000)
@given(data=st.one_of(mutated_caffemodel(), st.binary(max_size=300)))
def test_mutated_caffemodel(small, data):
    net, gm = small

    def go():
        layers = caffemodel.parse_caffemodel(bytearray(data), "mutant.caffemodel")
        torch_weights.load_blobs(net, gm, layers, strict=True, file="mutant.caffemodel")
    accept_or_refuse(go)


def test_the_unmutated_caffemodels_load(small):
    net, gm = small
    for data in MODELS:
        report = torch_weights.load_blobs(net, gm, caffemodel.parse_caffemodel(bytearray(data)), strict=True)
        assert report.loaded == ("conv", "fc") and not report.kept_fillers and not report.ignored


# ---- the netdef language ----

ZOO_DEFS = Path(__file__).resolve().parent.parent / "zoo_defs"
DSL_SEEDS = [p.read_text() for p in sorted(ZOO_DEFS.glob("*.net")) + sorted(MALFORMED.glob("*.net"))]
DSL_TOKENS = ["net", "block", "input", "return", "for", "in", "if", "else", "import", "expect", "as",
              "->", "+", "-", "*", "//", "/", "%", "(", ")", "[", "]", "{", "}", ",", "=", ":", "x", "\n",
              "data", "conv", "pool", "fc", "relu", "bn", "concat", "range", "k=", "s=", "p=", "MAX",
              '"{name}"', '"a"', "true", "batch=2", "0", "1", "3", "-1", "1e9", "3x8x8", "#"]


@st.composite
def mutated_dsl(draw):
    text = draw(st.sampled_from(DSL_SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["number", "number", "token", "delete", "duplicate"]))
        if kind == "number":
            spots = _spans(r"\b\d+\b", text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + draw(st.sampled_from(SMALL_NUMBERS + NUMBERS)) + text[b:]
        elif kind == "token":
            spots = _spans(r"->|//|\w+|[^\s\w]", text)
            if spots:
                a, b = draw(st.sampled_from(spots))
                text = text[:a] + draw(st.sampled_from(DSL_TOKENS)) + text[b:]
        else:
            a = draw(st.integers(0, len(text)))
            b = min(len(text), a + draw(st.integers(1, 200)))
            if kind == "delete":
                text = text[:a] + text[b:]
            else:
                at = draw(st.integers(0, len(text)))
                text = text[:at] + text[a:b] + text[at:]
    return text


def load_dsl_text(text):
    from compiler.frontends.dsl import load_dsl
    # A file may declare several nets: take the first. The path makes imports resolve
    # next to the zoo's files. Every phase: pipeline.check keeps the TEST one, its default.
    names = re.findall(r'^net\s+"([^"]*)"', text, re.M)
    return load_dsl(ZOO_DEFS / "mutant.net", net=names[0] if len(names) > 1 else None, text=text)


@pytest.mark.skipif(not DSL_SEEDS, reason="no .net files to mutate")
@settings(FAST, max_examples=400)
@given(st.one_of(mutated_dsl(), st.text(max_size=200),
                 st.lists(st.sampled_from(DSL_TOKENS), max_size=40).map(" ".join)))
# What hypothesis found: protobuf's ValueError on an input dim over int64, and len() of a
# range too long for a C ssize_t.
@example('net "t" {\n    input data: 3x99999999999999999999x16\n}\n')
@example('net "t" {\n    input data: 3x8x8, batch=99999999999999999999\n}\n')
@example('net "t" {\n    input data: 3x8x8\n    for i in range(99999999999999999999) {\n'
         '        data -> relu\n    }\n}\n')
def test_hostile_dsl(text):
    def go():
        net = load_dsl_text(text)
        errors = pipeline.check(net, max_memory=1 << 30)
        draw_text(net, errors)
        if not errors:
            exercise(net)
    accept_or_refuse(go)


"""The netdef language (docs/dsl.md): what each construct builds, the errors it reports,
and `netdef convert` in both directions over the corpus."""
import lark
import numpy as np
import pytest
import torch
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

import netdef
from compiler.errors import NetdefError, NetdefErrors
from compiler.frontends import dsl
from compiler.frontends.dsl.builtins import BUILTINS
from compiler.layers import registry
from compiler.frontends.prototxt import parse_net_text, read_text_file, upgrade_layers
from compiler.proto import caffe_pb2
from netdef import cli
from netdef.commands.convert import convert, prototxt_to_net
from grammar import BUILTIN_FUNCTIONS
from tests.conftest import CORPUS, ROOT

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/caffe-corpus is absent")


def build(text, net=None, file="t.net"):
    """Source text -> NetParameter (every phase)."""
    return dsl.load_proto(file, net, text=text)


def layers(text, net=None):
    return {l.name: l for l in build(text, net).layer}


def layer_text(prototxt):
    return text_format.Parse(prototxt, caffe_pb2.LayerParameter())


@pytest.fixture
def compile_source(tmp_path, monkeypatch):
    """Source text -> netdef.parse of it, as the file t.net (the name errors show)."""
    monkeypatch.chdir(tmp_path)

    def run(text, **kw):
        (tmp_path / "t.net").write_text(text)
        return netdef.parse("t.net", **kw)
    return run


@pytest.fixture
def error(compile_source):
    """Source text -> the error netdef.parse raises for it (the test fails if none)."""
    def run(text):
        with pytest.raises(NetdefError) as e:
            compile_source(text)
        return e.value
    return run


def value(expr):
    """A constant expression's value, computed by the language."""
    return dsl.load_module("t.net", "v = %s\nnet N { }\n" % expr).names["v"]


NET = 'net N {\n    input data: 3x32x32\n    %s\n}\n'


# -- what the constructs build -------------------------------------------------------------

def test_keywords_are_caffe_fields_short_or_long():
    expected = layer_text('''
        name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 64 kernel_size: 7 stride: 2 pad: 3 bias_term: false
                            weight_filler { type: "gaussian" std: 0.01 } }
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }''')
    short = NET % ('conv1 = data -> conv(64, k=7, s=2, p=3, bias=false, weight_filler={type="gaussian", '
                   'std=0.01}, lr_mult=[1, 2], decay_mult=[1, 0])')
    long = NET % ('conv1 = data -> Convolution(num_output=64, kernel_size=7, stride=2, pad=3, bias_term=false, '
                  'weight_filler={type="gaussian", std=0.01}, param=[{lr_mult=1, decay_mult=1}, '
                  '{lr_mult=2, decay_mult=0}])')
    assert layers(short)["conv1"] == expected
    assert layers(long)["conv1"] == expected


def test_chain_with_in_place_layers_is_one_line():
    got = build(NET % "conv1 = data -> conv(8, k=3) -> bn(global=true) -> scale(bias=true) -> relu").layer[1:]
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in got] == [
        ("conv1", "Convolution", ["data"], ["conv1"]),
        ("conv1_bn", "BatchNorm", ["conv1"], ["conv1"]),
        ("conv1_scale", "Scale", ["conv1"], ["conv1"]),
        ("conv1_relu", "ReLU", ["conv1"], ["conv1"])]


def test_chain_names_the_layers_before_its_result_after_it():
    got = build(NET % "y = data -> conv(8, k=3) -> relu as r -> pool(MAX, k=2, s=2)").layer[1:]
    assert [(l.name, list(l.bottom), list(l.top)) for l in got] == [
        ("y_conv", ["data"], ["y_conv"]), ("r", ["y_conv"], ["y_conv"]), ("y", ["y_conv"], ["y"])]


def test_as_names_layer_and_blob_and_top_overrides():
    got = layers(NET % '''c = data -> conv(8, k=3) as "conv1/3x3"
    r = c -> relu(top="relu_out") as "relu1"''')
    assert list(got["conv1/3x3"].top) == ["conv1/3x3"]
    assert (list(got["relu1"].bottom), list(got["relu1"].top)) == (["conv1/3x3"], ["relu_out"])


def test_residual_sum_concat_and_projection():
    got = layers(NET % '''a = data -> conv(8, k=1)
    b = data -> conv(8, k=3, p=1)
    c = data -> conv(8, 1, s=1)
    s = a + b + c -> relu
    j = concat(a, b, c, axis=1)''')
    assert (got["s"].type, list(got["s"].bottom), got["s"].HasField("eltwise_param")) == ("Eltwise", ["a", "b", "c"], False)
    assert (got["j"].type, list(got["j"].bottom), got["j"].concat_param.axis) == ("Concat", ["a", "b", "c"], 1)
    assert list(got["c"].convolution_param.kernel_size) == [1]
    assert got["s_relu"].type == "ReLU"


def test_blocks_loops_and_name_templates():
    text = '''
block unit(x, id, c, s=1) {
    return x -> conv(c, k=3, p=1, s=s) as "res{id}" -> relu
}
block stage(x, stage, n, c, numbered=false) {
    for i in range(n) {
        id = "{stage}{letter(i)}" if i == 0 or not numbered else "{stage}b{i}"
        x = unit(x, id, c, s=2 if i == 0 else 1)
    }
    return x
}
net N {
    input data: 3x32x32
    x = stage(data, 3, 3, 16)
    x = stage(x, 4, 23, 32, numbered=true)
}
'''
    names = [l.name for l in build(text).layer if l.type == "Convolution"]
    assert names == ["res3a", "res3b", "res3c", "res4a"] + ["res4b%d" % i for i in range(1, 23)]
    strides = [list(l.convolution_param.stride) for l in build(text).layer if l.type == "Convolution"]
    assert strides[0] == [2] and strides[1] == [1] and strides[3] == [2]


def test_a_registered_type_is_called_by_the_short_name_its_definition_gives(tmp_path):
    """The language's vocabulary is the registry's: a user's type with a dsl_name is read
    and written like conv or relu, positional fields, abbreviations and in place included."""
    class Shift(netdef.LayerDef):
        type = "Shift"
        param_field = "power_param"
        in_place = True
        dsl_name = "shift"
        dsl_positional = ("shift",)
        dsl_abbreviations = {"k": "scale"}

        def shape(self, layer, shapes):
            return [shapes[0]]

    netdef.register_layer(Shift())
    try:
        got = build(NET % "y = data -> conv(4, k=1) -> shift(0.5, k=2)").layer[2]
        assert (got.name, got.type, list(got.bottom), list(got.top)) == ("y_shift", "Shift", ["y"], ["y"])
        assert (got.power_param.shift, got.power_param.scale) == (0.5, 2)
        (tmp_path / "t.net").write_text(NET % "y = data -> conv(4, k=1) -> shift(0.5, k=2)")
        (tmp_path / "t.prototxt").write_text(convert(tmp_path / "t.net"))
        assert "-> shift(0.5, k=2)" in prototxt_to_net(tmp_path / "t.prototxt")
    finally:
        registry.unregister("Shift")


@pytest.mark.parametrize("expr,expected", [
    ("7 // 2", 3), ("-7 // 2", -4), ("7 % 3", 1), ("2 * (3 + 4) - 1", 13), ("64 * 4", 256),
    ("12 / 4", 3), ("0.5 * 3", 1.5), ("5 if 2 > 1 else 6", 5), ("not (1 == 1) or 2 <= 2", True),
    ("len([1, 2, 3])", 3), ('"res{2 + 1}{letter(0)}"', "res3a"), ("letter(25)", "z"),
    ("max(3, 9, 4)", 9), ("[3, 4, 6, 3][2]", 6), ("range(1, 7, 2)", [1, 3, 5]),
    ("enumerate([64, 128])", [(0, 64), (1, 128)]), ('"a" + "b"', "ab"), ('"{{x}}"', "{x}"),
])
def test_arithmetic_and_builtins(expr, expected):
    assert value(expr) == expected


def test_the_writer_knows_the_builtins_the_reader_has():
    """convert never names a variable after a builtin, so the two lists agree."""
    assert set(BUILTINS) == set(BUILTIN_FUNCTIONS)


_ints = st.integers(min_value=-50, max_value=50)


@st.composite
def _int_expr(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        n = draw(_ints)
        return "(%d)" % n if n < 0 else str(n), n
    a, va = draw(_int_expr(depth=depth - 1))
    b, vb = draw(_int_expr(depth=depth - 1))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    if op in ("//", "%") and vb == 0:
        op = "+"
    return "(%s %s %s)" % (a, op, b), {"+": va + vb, "-": va - vb, "*": va * vb,
                                       "//": va // vb if vb else 0, "%": va % vb if vb else 0}[op]


@settings(max_examples=60, deadline=None)
@given(_int_expr())
def test_integer_arithmetic_is_exact(case):
    text, expected = case
    assert value(text) == expected


def test_none_leaves_a_field_unset_and_blocks_are_values():
    text = '''
block cr(x, name, c, s=none) {
    return x -> conv(c, k=3, s=s) as "{name}" -> relu
}
block twice(x, name, f) {
    return f(f(x, "{name}1", 4), "{name}2", 4, s=2)
}
net N {
    input data: 3x32x32
    y = twice(data, "c", cr)
}
'''
    got = layers(text)
    assert not got["c1"].convolution_param.stride and list(got["c2"].convolution_param.stride) == [2]
    assert list(got["c2"].bottom) == ["c1"]


def test_inputs_batch_and_shapes():
    got = layers('net N {\n    input data: 3x224x224, label: [], im_info: 3, batch=10\n}\n')["input"]
    assert [list(s.dim) for s in got.input_param.shape] == [[10, 3, 224, 224], [10], [10, 3]]
    assert list(got.top) == ["data", "label", "im_info"]
    one = layers(NET % "")["input"]
    assert [list(s.dim) for s in one.input_param.shape] == [[1, 3, 32, 32]]


def test_phases_and_loss_layers(compile_source):
    text = NET % '''phase TRAIN {
        label = Input(shape=[1]) as label_in
    }
    fc = data -> fc(10)
    phase TRAIN {
        loss = softmax_loss(fc, label, loss_weight=1, loss_param={ignore_label=255})
    }
    phase TEST {
        prob = fc -> softmax
    }'''
    got = layers(text)
    assert got["loss"].include[0].phase == caffe_pb2.TRAIN
    assert got["loss"].loss_param.ignore_label == 255 and list(got["loss"].loss_weight) == [1.0]
    assert got["prob"].include[0].phase == caffe_pb2.TEST and not got["fc"].include
    test = compile_source(text, phase="TEST")
    train = compile_source(text, phase="TRAIN")
    assert [l.name for l in test.layers] == ["input", "fc", "prob"]
    assert [l.name for l in train.layers] == ["input", "label_in", "fc", "loss"]


def test_imports_and_several_nets(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text(
        'width = 8\nblock cbr(x, name, c=width) {\n    return x -> conv(c, k=3, p=1) as "{name}" -> relu\n}\n')
    (tmp_path / "main.net").write_text(
        'import "lib/blocks.net"\n'
        'net A {\n    input data: 3x8x8\n    y = cbr(data, "a1")\n}\n'
        'net B {\n    input data: 3x8x8\n    y = cbr(data, "b1", c=4)\n}\n')
    a = dsl.load_dsl(tmp_path / "main.net", net="A")
    assert [l.name for l in a.layers] == ["input", "a1", "a1_relu"]
    assert a.layers[1].param.convolution_param.num_output == 8
    assert dsl.load_dsl(tmp_path / "main.net", net="B").layers[1].param.convolution_param.num_output == 4
    with pytest.raises(NetdefError, match="declares 2 nets"):
        dsl.load_dsl(tmp_path / "main.net")
    (tmp_path / "lib" / "blocks.net").write_text('import "../main.net"\n')
    with pytest.raises(NetdefError, match="import cycle"):
        dsl.load_dsl(tmp_path / "main.net", net="A")


def test_imports_outside_the_project_are_refused_unread(tmp_path, monkeypatch):
    """A net file may import the files under its folder; others (absolute paths, ../, a
    symlink leading out) only from folders listed in $NETDEF_IMPORT_PATH. A refused file
    is never read, so its content cannot appear in an error."""
    monkeypatch.delenv("NETDEF_IMPORT_PATH", raising=False)
    outside, project = tmp_path / "outside", tmp_path / "project"
    outside.mkdir()
    project.mkdir()
    (outside / "secret.net").write_text("the secret: hunter2\n")
    (project / "link.net").symlink_to(outside / "secret.net")
    net = 'import "%s"\nnet N {\n    input data: 3x8x8\n}\n'
    for target in (str(outside / "secret.net"), "../outside/secret.net", "link.net"):
        (project / "main.net").write_text(net % target)
        with pytest.raises(NetdefError) as e:
            dsl.load_dsl(project / "main.net")
        assert (e.value.line, e.value.col) == (1, 8)
        assert "outside the project" in e.value.message and "NETDEF_IMPORT_PATH" in e.value.hint
        assert "hunter2" not in str(e.value)
    monkeypatch.setenv("NETDEF_IMPORT_PATH", str(outside))
    with pytest.raises(NetdefError, match="syntax error") as e:     # read, as the user allowed
        dsl.load_dsl(project / "main.net")
    assert e.value.file == str(project / "link.net")


def test_an_error_in_an_imported_block_names_the_call_site_and_its_file(tmp_path):
    (tmp_path / "blocks.net").write_text("block bad(x) {\n    return x -> conv(4, k=3, bogus=1)\n}\n")
    (tmp_path / "main.net").write_text('import "blocks.net"\nnet N {\n    input data: 3x8x8\n'
                                       '    for i in [1, 2] {\n        y = bad(data)\n    }\n}\n')
    with pytest.raises(NetdefError) as e:
        dsl.load_dsl(tmp_path / "main.net")
    assert (e.value.file, e.value.line) == (str(tmp_path / "blocks.net"), 2)
    assert e.value.message.startswith("in block 'bad' called from %s:5 (i = 1): " % (tmp_path / "main.net"))



def test_a_check_error_at_a_layer_a_block_made_names_the_call_that_made_it(tmp_path):
    # The shape check runs after the file has run, at the layer: its line is the block's,
    # and only the call site says which iteration's pooling is too big.
    (tmp_path / "loop.net").write_text(
        'block down(x, i) {\n    return x -> pool(MAX, k=i) as "p{i}"\n}\n'
        'net N {\n    input data: 3x8x8\n    for i in [2, 9] {\n        y = down(data, i)\n    }\n}\n')
    with pytest.raises(NetdefErrors) as e:
        netdef.parse(tmp_path / "loop.net")
    error, = e.value.errors
    assert (error.layer, error.line) == ("p9", 2)
    assert error.message.startswith("in block 'down' called from line 7 (i = 9): kernel 9 is larger")

def test_comments_blank_lines_and_broken_lines():
    text = '''# a comment
net N {   # another

    input data: 3x8x8
    y = data
        -> conv(8,
                k=3,    # a comment inside a call
                p=1)
        -> relu
    z = y -> conv(4, k=1, weight_filler={
        type="xavier"
    })
}
'''
    got = layers(text)
    assert list(got["y_relu"].top) == ["y"] and got["z"].convolution_param.weight_filler.type == "xavier"


def test_expect_checks_shapes_after_inference(compile_source, error):
    ok = NET % "y = data -> conv(8, k=3, s=2)\n    expect y: 8x15x15"
    assert compile_source(ok).shape("y") == (1, 8, 15, 15)
    e = error(NET % "y = data -> conv(8, k=3, s=2)\n    expect y: 8x16x16")
    assert str(e).startswith("t.net:4:5: ")
    assert "8x16x16" in e.message and "8x15x15" in e.message


def test_expect_on_a_blob_of_one_phase_is_checked_in_that_phase(compile_source):
    text = NET % '''phase TRAIN {
        t = data -> conv(4, k=1)
        expect t: 4x30x30
    }'''
    # TEST has no blob t: only a TRAIN build checks the assertion
    assert [l.name for l in compile_source(text, phase="TEST").layers] == ["input"]
    e = pytest.raises(NetdefError, compile_source, text, phase="TRAIN").value
    assert (e.line, e.col) == (5, 9) and "4x32x32" in e.message


# -- errors ----------------------------------------------------------------------------------

def _check_located(e, line, col):
    assert (e.line, e.col) == (line, col), str(e)
    assert str(e).startswith("t.net:%d:%d: " % (line, col))
    excerpt = e.message.split("\n")
    assert excerpt[-1].index("^") - 4 == col - 1, "the caret stands under the column"
    assert "Token(" not in str(e) and "lark" not in str(e).lower()


@pytest.mark.parametrize("src,line,col,words", [
    ("y = data -> conv(64 k=3)", 3, 25, ["unexpected name k", "expected ',', ')'"]),
    ("y = data -> conv(64, k=3) @ 2", 3, 31, ["unexpected character '@'"]),
    # the file ends inside the call: the error points at the bracket left open
    ("y = data -> conv(64, k=3 ", 3, 21, ["'(' of conv is not closed"]),
    ("y = data -> relu as 'r'", 3, 25, ["unexpected character"]),
    ("if 1 = 2 { }", 3, 10, ["unexpected '='"]),
    ('y = data -> conv(4, k=3) as "c{i + }"', 3, 38, ["expected an expression"]),
])
def test_syntax_errors_in_words(src, line, col, words, error):
    text = NET % src
    if "conv(64, k=3 " in src:
        text = text[:text.rindex("}")]      # the file ends inside the call
    e = error(text)
    _check_located(e, line, col)
    assert e.message.startswith("syntax error: ")
    for w in words:
        assert w in e.message


BLOCK = 'block b(x, c) {\n    return x -> conv(c, k=1) as "b{c}"\n}\n'


@pytest.mark.parametrize("src,line,col,words", [
    (NET % "y = dta -> conv(8, k=3)", 3, 9, ["undefined name 'dta'", "did you mean 'data'"]),
    (NET % "y = data -> conv_bn(8)", 3, 17, ["no block, layer or function named 'conv_bn'"]),
    (BLOCK + NET % "y = b(data, 1, 2)", 6, 9, ["block b takes 2 arguments, got 3"]),
    (BLOCK + NET % "y = b(data, d=2)", 6, 17, ["block b has no parameter 'd'"]),
    (BLOCK + NET % "y = b(data)", 6, 9, ["block b needs argument 'c'"]),
    ("block a(x) {\n    return b(x)\n}\nblock b(x) {\n    return a(x)\n}\n" + NET % "y = a(data)", 5, 12,
     ["recursive block: a -> b -> a"]),
    (NET % "y = data -> conv(4, kernel=3)", 3, 25, ["has no parameter 'kernel'", "kernel_size"]),
    (NET % "y = data -> pool(MAXX, k=2)", 3, 22, ["pool is one of MAX, AVE, STOCHASTIC"]),
    (NET % 'y = data -> conv("4", k=3)', 3, 22, ["num_output is an integer"]),
    (NET % "data -> conv(4, k=3)", 3, 13, ["needs a name"]),
    (NET % "y = data -> conv(5 / 2, k=3)", 3, 22, ["5 / 2 is not a whole number"]),
    (BLOCK + NET % 'y = data -> b(4) as "x"', 6, 17, ["block b names its own layers"]),
    (NET % "phase TRAIN {\n        phase TEST { }\n    }", 4, 15, ["phase TEST inside phase TRAIN"]),
    # a misspelt Caffe type is unknown, with the near ones; not its parameters' fault
    (NET % "y = data -> Convolutoin(num_output=8, kernel_size=3)", 3, 17,
     ["unknown layer type 'Convolutoin'", "did you mean 'Convolution' (conv)"]),
    (NET % "y = data -> Zorglub(num_output=8)", 3, 25,
     ["unknown layer type 'Zorglub'", "'num_output'", "netdef.register_layer"]),
    # a block that ends without `return` gives nothing, and says so where it is used
    ("block nr(x) {\n    y = x -> relu\n}\n" + NET % "y = data -> nr -> pool(MAX, 2)", 6, 23,
     ["nothing flows into this link: block nr, called at line 6, ended without `return`",
      "end block nr (t.net:1) with `return`"]),
])
def test_semantic_errors_are_located(src, line, col, words, error):
    e = error(src)
    _check_located(e, line, col)
    for w in words:
        assert w in str(e)      # the message or its hint


def test_what_the_passes_check_reads_as_for_any_source(error):
    """Include-with-exclude rules are the compiler passes' errors, worded as for a
    prototxt and located at the layer's line. (Duplicate layer names are Caffe's, and warn:
    tests/test_hardening.py.)"""
    e = error(NET % 'y = data -> conv(4, k=1, include={stage="a"}, exclude={stage="b"})')
    assert (e.file, e.line, e.layer) == ("t.net", 3, "y") and "not both" in e.message


@pytest.mark.parametrize("src,words", [
    (NET % ("y = " + "[" * 3000 + "1" + "]" * 3000), "nests too deeply"),
    (NET % "for i in range(1000) {\n        for j in range(1000) { }\n    }", "over 100000 loop iterations"),
    (NET % "y = [1] * 1000000000", "a list of 1000000000 values is too long"),
    # values that would grow without bound (hours, or all memory, to compute)
    (NET % 's = "ab"\n    for i in range(34) {\n        s = s + s\n    }', "a string of 131072 characters is too long"),
    (NET % 's = "ab"\n    for i in range(34) {\n        s = "{s}{s}"\n    }', "a string of 131072 characters"),
    (NET % "x = 3\n    for i in range(40) {\n        x = x * x\n    }", "an integer of 102 bits is out of range"),
    # integers Python could not print (over 4300 digits) or turn into a float
    (NET % ("x = " + "9" * 5000), "an integer of 5000 digits is out of range"),
    (NET % ("x = " + "9" * 400 + " * 1.5"), "an integer of 400 digits"),
    (NET % ("input more: 3x%sx8" % ("9" * 5000)), "an integer of 5000 digits"),
])
def test_absurd_sources_are_refused(src, words, error):
    assert words in str(error(src))


def test_file_with_no_net_or_unknown_net():
    with pytest.raises(NetdefError, match="no net in this file"):
        dsl.load_dsl("t.net", text="block b(x) { return x }\n")
    with pytest.raises(NetdefError, match="no net named 'M'"):
        dsl.load_dsl("t.net", net="M", text=NET % "")


# -- the pipeline --------------------------------------------------------------------------

TINY = '''net Tiny {
    input data: 1x8x8
    conv1 = data -> conv(2, k=3) -> relu
    prob = conv1 -> fc(3) as fc1 -> softmax
}
'''


def test_dsl_net_compiles_runs_and_loads_weights_by_layer_name(tmp_path):
    path = tmp_path / "tiny.net"
    path.write_text(TINY)
    w = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) / 10 - 0.8
    b = np.array([0.1, -0.2], np.float32)
    fc_w = np.linspace(-1, 1, 3 * 72, dtype=np.float32).reshape(3, 72)
    model = netdef.compile_net(netdef.parse(path), {"conv1": [w, b], "fc1": [fc_w, np.zeros(3, np.float32)]})
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        got = model(data=x)["prob"]
        conv = torch.relu(torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b)))
        want = torch.softmax(conv.flatten(1) @ torch.from_numpy(fc_w).T, dim=1)
    assert torch.allclose(got, want, atol=1e-6)
    assert cli.main(["compile", str(path)]) == 0
    np.savez(tmp_path / "in.npz", data=x.numpy())
    assert cli.main(["run", str(path), "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")]) == 0
    assert np.load(tmp_path / "out.npz")["prob"].shape == (1, 3)


def test_convert_cli_both_ways(tmp_path, capsys):
    path = tmp_path / "tiny.net"
    path.write_text(TINY)
    assert cli.main(["convert", str(path), "-o", str(tmp_path / "tiny.prototxt")]) == 0
    assert cli.main(["convert", str(tmp_path / "tiny.prototxt"), "-o", str(tmp_path / "back.net")]) == 0
    again = dsl.load_proto(tmp_path / "back.net")
    assert list(again.layer) == list(dsl.load_proto(path).layer)
    assert cli.main(["convert", str(tmp_path / "missing.net")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_writer_folds_chains_and_omits_defaults(tmp_path):
    prototxt = tmp_path / "small.prototxt"
    prototxt.write_text('''name: "Small"
input: "data"
input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool1" top: "ip"
        inner_product_param { num_output: 10 } param { lr_mult: 1 } param { lr_mult: 2 } }
layer { name: "ip_relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "out" type: "Eltwise" bottom: "ip" bottom: "ip" top: "out" }
''')
    assert prototxt_to_net(prototxt) == '''# Converted from small.prototxt by netdef convert.
net "Small" {
    input data: 3x32x32
    conv1 = data -> conv(16, k=3, p=1) -> relu as relu1
    ip = conv1 -> pool(MAX, k=2, s=2) as pool1 -> fc(10, lr_mult=[1, 2]) -> relu
    out = ip + ip
}
'''


def corpus_nets():
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.prototxt") if "solver" not in p.name)


@needs_corpus
@pytest.mark.parametrize("rel", corpus_nets())
def test_corpus_round_trip(rel, tmp_path):
    """prototxt -> .net -> prototxt gives the same layers: names, types, every field, bottoms
    and tops, in order (after Caffe's load-time upgrades of the original)."""
    path = CORPUS / rel
    proto, blocks, lines = parse_net_text(read_text_file(path), str(path))
    if blocks["layer"] and blocks["layers"]:        # nin deploy: Caffe refuses it, so does convert
        with pytest.raises(NetdefError) as e:
            convert(path)
        assert e.value.line is not None and "mixes V2" in e.value.message
        return
    original = [l.param for l in upgrade_layers(proto, blocks, str(path), lines)]
    net_file = tmp_path / (path.stem + ".net")
    net_file.write_text(convert(path))
    back = dsl.load_proto(net_file)
    assert back.name == (proto.name or path.stem)
    assert len(back.layer) == len(original)
    for mine, theirs in zip(back.layer, original):
        assert mine == theirs, "%s: layer %s differs" % (rel, theirs.name)
    # and to prototxt text again: the same layers once more
    _, again, _ = parse_net_text(convert(net_file), "again")
    assert [caffe_pb2.LayerParameter.FromString(wire) for wire in again["layer"]] == original


def test_docs_examples_work(tmp_path, monkeypatch):
    """The nets and the Python example of docs/dsl.md compile (and train a step) as shown."""
    import re
    doc = (ROOT / "docs" / "dsl.md").read_text()
    nets = [b for b in re.findall(r"```\n(.*?)```", doc, re.S) if re.search(r"^net ", b, re.M)]
    assert len(nets) >= 3
    for i, text in enumerate(nets):
        path = tmp_path / ("example%d.net" % i)
        path.write_text(text)
        netdef.parse(path)
    monkeypatch.chdir(tmp_path)
    (python,) = re.findall(r"```python\n(.*?)```", doc, re.S)
    scope = {}
    exec(compile(python, "docs/dsl.md", "exec"), scope)    # the doc's own example, run as written
    assert scope["loss"].item() > 0 and (tmp_path / "tiny.caffemodel").is_file()


def test_the_stored_parse_tables_are_the_grammars():
    """grammar/netdef_lalr.py holds the LALR tables computed from grammar/netdef.lark, so
    that a process does not compute them (about 0.1 s); after a grammar change, `make
    grammar` writes them again."""
    from grammar import netdef_lalr
    from compiler.frontends.dsl import syntax
    assert netdef_lalr.GRAMMAR_SHA256 == syntax.grammar_digest(), "grammar/netdef_lalr.py is stale: run `make grammar`"
    if netdef_lalr.LARK_VERSION != lark.__version__:
        pytest.skip("the tables are for lark %s, this is lark %s: the parser computes its own"
                    % (netdef_lalr.LARK_VERSION, lark.__version__))
    # lark numbers the states differently in each process: compare what the tables parse.
    stored, computed = syntax.parser(), syntax.build_parser()
    for path in sorted((ROOT / "zoo_defs").glob("*.net")):
        text = path.read_text()
        assert stored.parse(text, start="start") == computed.parse(text, start="start"), path.name

"""The fast reader of plain protobuf text (compiler/frontends/plain_text.py) makes exactly
the message text_format makes, and leaves everything else to text_format, so that what a
file means and every error about it stay as they were."""
import pytest
from google.protobuf import text_format

from compiler.errors import NetdefError
from compiler.frontends import plain_text, prototxt
from compiler.proto import caffe_pb2

from .conftest import CORPUS, ROOT, SHARED

NET = caffe_pb2.NetParameter


def fast(text, message=NET):
    """The message the fast reader makes of `text`, a net's layers read apart (as the net
    frontend reads them) and put back in order; None where it declines."""
    split = ("layer", "layers") if message is NET else ()
    read = plain_text.wire_bytes(text, message.DESCRIPTOR, split)
    if read is None:
        return None
    rest, pieces, _ = read
    parsed = message.FromString(bytes(rest))
    for name, values in pieces.items():
        for value in values:
            getattr(parsed, name).add().MergeFromString(value)
    return parsed


def same_as_text_format(text, message=NET):
    parsed = fast(text, message)
    assert parsed is not None, "declined plain text: %r" % text
    assert parsed.SerializeToString() == text_format.Parse(text, message()).SerializeToString()


@pytest.mark.parametrize("text", [
    'name: "n" layer { name: "a" type: "ReLU" bottom: "x" top: "x" } layer { name: "b" }',
    'layer{name:"x"type:"ReLU"}',
    'layer: { name: "a" }',                                      # ':' before a block
    "layer { name: 'single' }",
    'layer { name: "é€ #not a comment" }   # a comment\n# another',
    'input_dim: 1 input_dim: -2147483648 input: "data"',
    'layer { convolution_param { num_output: 4294967295 kernel_size: 3 kernel_size: 1 } }',
    'layer { loss_weight: 1e-3 loss_weight: .5 loss_weight: 1. loss_weight: -0 loss_weight: 3.4e38 }',
    'layer { include { phase: TEST } propagate_down: True propagate_down: false }',
    'layer { convolution_param { } param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 } }',
    'layer { blobs { data: 1 data: 2 shape { dim: 2 } double_data: 1e400 } }',
    'state { phase: TRAIN stage: "s" }', "", "# only a comment\n",
])
def test_plain_text_makes_text_formats_message(text):
    same_as_text_format(text)


@pytest.mark.parametrize("text", [
    # text_format reads these; the fast reader leaves them to it
    'layer < name: "a" >', 'layer { name: "a"; }', 'layer [{name: "a"}]', 'layer { name: "a\\n" }',
    "layer { name: 'a' 'b' }", 'layer { convolution_param { num_output: 0x10 } }',
    'layer { loss_weight: inf }', 'layer { loss_weight: 1f }', 'layer { include { phase: 1 } }',
    'layer { propagate_down: t }', 'layer { loss_weight: 3.5e38 }',
    # and these are mistakes, which text_format words
    'name: "a" name: "b"', 'layer { convolution_param { } convolution_param { } }',
    'layer { convolution_param { num_output: -1 } }', 'layer { convolution_param { num_output: 4294967296 } }',
    'layer { include { phase: TSET } }', 'layer { name: a }', 'layer { name "a" }', 'layer { convolution_param: 3 }',
    'layer {', 'layer { } }', '}', 'layer { unknown: 3 }', 'layer { name: "a\n" }', 'layer { loss_weight: - 1 }',
    'layer { convolution_param { num_output: 010 } }', "layer {" * 5000,
])
def test_anything_else_is_left_to_text_format(text):
    assert fast(text) is None


def test_errors_keep_text_formats_location_and_wording():
    text = 'name: "n"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottm: "x"\n}\n'
    with pytest.raises(NetdefError) as e:
        prototxt.parse_text(text, "n.prototxt", NET())
    assert (e.value.line, e.value.col) == (5, 3)
    assert e.value.message == "syntax error: unknown field 'bottm' in layer"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/caffe-corpus is absent")
def test_every_reference_prototxt_reads_as_text_format_reads_it():
    files = sorted(SHARED.rglob("*.prototxt")) + sorted((ROOT / "tests").rglob("*.prototxt"))
    read = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for message in (caffe_pb2.NetParameter, caffe_pb2.SolverParameter):
            try:
                expected = text_format.Parse(text, message()).SerializeToString()
            except text_format.ParseError:
                assert fast(text, message) is None, path
                continue
            parsed = fast(text, message)
            if parsed is not None:
                assert parsed.SerializeToString() == expected, path
                read += 1
    assert read > 100       # nearly every file is plain


LINES_CASES = [
    'name: "n"\ninput: "data"\ninput_dim: 1\nlayer {\n  name: "a"\n}\n\nlayer { name: "b" } layer { name: "c" }\n',
    '# layer { in a comment\nlayer { name: "a # not a comment" }\n  layer\n{ name: "b" }\ninput_shape { dim: 1 }\n',
    'layers { name: "v1" type: RELU }\r\nlayers {\r\n name: "v1b" }\r\n',
]


@pytest.mark.parametrize("text", LINES_CASES)
def test_lines_of_layers_read_in_the_same_scan_are_the_scans_of_the_slow_path(text):
    assert plain_text.wire_bytes(text, NET.DESCRIPTOR) is not None
    assert prototxt.parse_net_text(text)[2] == prototxt._layer_lines(text)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/caffe-corpus is absent")
def test_reference_nets_layer_lines_are_the_slow_paths():
    checked = 0
    for path in sorted(SHARED.rglob("*.prototxt")) + sorted((ROOT / "tests").rglob("*.prototxt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            lines = prototxt.parse_net_text(text, str(path))[2]
        except NetdefError:
            continue
        assert lines == prototxt._layer_lines(text), path
        checked += len(lines["layer"]) + len(lines["layers"])
    assert checked > 2000       # layers (2,886 when written)

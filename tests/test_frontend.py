"""Prototxt frontend and the passes up to shapes: Caffe's file formats and blob rules."""

import pytest
import torch

import netdef
from compiler.errors import NetdefError
from compiler.proto import caffe_pb2
from tests.nets import HEADER, compile_text, parse_text

CONV = 'layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" convolution_param { num_output: 4 kernel_size: 3 } }\n'


def test_v1_layers_upgrade_like_caffe():
    text = HEADER + '''layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
      blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 param: "w" param: "b"
      convolution_param { num_output: 4 kernel_size: 3 } }
    layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
    layers { name: "prob" type: SOFTMAX bottom: "conv1" top: "prob" }
    '''
    net = parse_text(text)
    conv = net.layer("conv1")
    assert conv.type == "Convolution" and net.layer("relu1").type == "ReLU"
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv.param.param] == [("w", 1, 1), ("b", 2, 0)]
    assert conv.line == 7


def test_mixed_layer_and_layers_is_refused_with_a_location():
    text = HEADER + CONV % ("a", "data", "a") + 'layers { name: "r" type: RELU bottom: "a" top: "a" }\n'
    with pytest.raises(NetdefError) as e:
        parse_text(text)
    assert e.value.line == 8 and "mixes" in e.value.message


@pytest.mark.parametrize("inputs", [
    'input: "data" input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8',
    'input: "data" input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }',
    'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }',
])
def test_every_input_style(inputs):
    net = parse_text('name: "t"\n' + inputs + "\n" + CONV % ("c", "data", "c"))
    assert net.shape("c") == (2, 4, 6, 6)


def test_input_dim_count_must_be_four_per_input():
    with pytest.raises(NetdefError, match="need 8 input_dim"):
        parse_text('input: "a" input: "b" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n')


def test_phase_stage_and_level_rules():
    text = HEADER + CONV % ("c", "data", "c") + '''
    layer { name: "train_only" type: "ReLU" bottom: "c" top: "t1" include { phase: TRAIN } }
    layer { name: "not_test" type: "ReLU" bottom: "c" top: "t2" exclude { phase: TEST } }
    layer { name: "staged" type: "ReLU" bottom: "c" top: "t3" include { stage: "deploy" } }
    layer { name: "leveled" type: "ReLU" bottom: "c" top: "t4" include { min_level: 2 } }
    layer { name: "not_staged" type: "ReLU" bottom: "c" top: "t5" include { not_stage: "deploy" } }
    '''
    names = lambda net: [l.name for l in net.layers]
    assert names(parse_text(text)) == ["input", "c", "not_staged"]
    assert names(parse_text(text, "TRAIN")) == ["input", "c", "train_only", "not_test", "not_staged"]
    assert names(parse_text(text, stages=["deploy"], level=3)) == ["input", "c", "staged", "leveled"]


def test_syntax_error_gives_line_column_and_text():
    with pytest.raises(NetdefError) as e:
        parse_text(HEADER + 'layer { name: "c" type: "Convolution" convolution_param { num_ouput: 4 } }\n')
    err = e.value
    assert (err.line, err.col) == (7, 59) and "num_ouput" in err.message and "num_ouput" in str(err)


def test_ceil_mode_false_means_round_mode_floor():
    pool = 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 %s } }\n'
    shapes = [parse_text(HEADER + pool % extra).shape("p") for extra in ("", "round_mode: FLOOR", "ceil_mode: false")]
    assert shapes == [(2, 3, 4, 4), (2, 3, 3, 3), (2, 3, 3, 3)]


def test_padding_on_one_axis_drops_a_last_window_in_the_padding_on_both():
    """PoolingLayer::Reshape checks `if (pad_h_ || pad_w_)`, then clips each axis whose last
    window would start at or past size + pad: with pad_w 1, the rows (pad_h 0, stride 4
    over 8 rows) lose their third window, which starts at row 8, past the input."""
    pool = ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX '
            'kernel_h: 1 kernel_w: 2 stride_h: 4 stride_w: 2 pad_h: 0 pad_w: %d } }\n')
    assert parse_text(HEADER + pool % 1).shape("p") == (2, 3, 2, 5)
    assert parse_text(HEADER + pool % 0).shape("p") == (2, 3, 3, 4)     # unpadded: no clip
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    got = compile_text(HEADER + pool % 1)(x)["p"]
    # Rows 0 and 4; column windows start at -1, 1, 3, 5, 7 (the last holds column 7 only).
    cols = [[0], [1, 2], [3, 4], [5, 6], [7]]
    want = torch.stack([torch.stack([x[:, :, r, c].amax(-1) for c in cols], -1) for r in (0, 4)], -2)
    assert torch.equal(got, want)


def test_in_place_blobs_get_ssa_ids_and_users_see_the_last_value():
    text = HEADER + CONV % ("c", "data", "c") + '''
    layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
    layer { name: "s" type: "Softmax" bottom: "c" top: "c" }
    '''
    net = parse_text(text)
    assert net.layer("r").tops == ("c#1",) and net.layer("s").bottoms == ("c#1",)
    assert net.latest["c"] == "c#2"
    model = netdef.compile_net(net, outputs="all")
    out = model(torch.randn(2, 3, 8, 8))
    assert torch.allclose(out["c"].sum(dim=1), torch.ones(2, 6, 6))   # the Softmax output


def test_in_place_write_after_another_reader_is_refused_as_caffe_does():
    text = HEADER + CONV % ("c", "data", "c") + '''
    layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { kernel_size: 2 } }
    layer { name: "r" type: "ReLU" bottom: "c" top: "c" }
    '''
    with pytest.raises(NetdefError, match="produced by multiple sources"):
        parse_text(text)


def test_duplicate_top_unknown_bottom_and_cycle_are_all_reported():
    text = HEADER + CONV % ("a", "data", "x") + CONV % ("b", "data", "x") + CONV % ("c", "nothere", "y") \
        + CONV % ("d", "later", "z") + CONV % ("e", "data", "later")
    with pytest.raises(netdef.NetdefErrors) as e:
        parse_text(text)
    msgs = [(err.layer, err.message, err.hint) for err in e.value.errors]
    assert [m[0] for m in msgs] == ["b", "c", "d"]
    assert "multiple sources" in msgs[0][1]
    assert "unknown bottom blob 'nothere'" in msgs[1][1]
    assert "written later" in msgs[2][2] and "cycle" in msgs[2][2]


def test_unknown_type_names_close_matches_and_how_to_register():
    with pytest.raises(NetdefError) as e:
        parse_text(HEADER + 'layer { name: "x" type: "Convolutoin" bottom: "data" top: "x" }\n')
    assert "'Convolutoin'" in e.value.message and "Convolution" in e.value.hint
    assert "register_layer" in e.value.hint and e.value.line == 7


def test_custom_layer_registration():
    class Twice(netdef.LayerDef):
        type = "Twice"

        def shape(self, layer, shapes):
            return [shapes[0]]

        def lower(self, layer, shapes):
            return _Twice()

    class _Twice(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    netdef.register_layer(Twice())
    try:
        model = compile_text(HEADER + 'layer { name: "t" type: "Twice" bottom: "data" top: "t" }\n')
        x = torch.randn(2, 3, 8, 8)
        assert torch.equal(model(x)["t"], 2 * x)
    finally:
        from compiler.layers import registry
        registry.unregister("Twice")


def test_shared_params_are_one_parameter():
    text = HEADER + '''
    layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" } param { name: "b" }
            convolution_param { num_output: 4 kernel_size: 3 } }
    layer { name: "b" type: "Convolution" bottom: "data" top: "b" param { name: "w" } param { name: "b" }
            convolution_param { num_output: 4 kernel_size: 3 } }
    '''
    model = compile_text(text)
    assert model.a.weight is model.b.weight and model.a.bias is model.b.bias
    assert sum(p.numel() for p in model.parameters()) == 4 * 27 + 4


def test_module_names_come_from_caffe_layer_names():
    model = compile_text(HEADER + CONV % ("conv1/7x7_s2", "data", "c") + CONV % ("2nd", "c", "d"))
    assert dict(netdef.record(model).layer_names) == {"conv1_7x7_s2": "conv1/7x7_s2", "_2nd": "2nd"}
    assert "conv1_7x7_s2.weight" in model.state_dict()


def test_inputs_may_change_size_like_caffe_reshape():
    text = HEADER + CONV % ("c", "data", "c") + \
        'layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" inner_product_param { num_output: 5 } }\n'
    net = parse_text(text, input_shapes={"data": (5, 3, 8, 8)})
    assert net.shape("fc") == (5, 5)
    model = netdef.compile_net(net)
    assert model(torch.randn(5, 3, 8, 8))["fc"].shape == (5, 5)


def test_group_must_divide_channels_with_a_hint():
    text = HEADER + 'layer { name: "g" type: "Convolution" bottom: "data" top: "g" convolution_param { num_output: 4 kernel_size: 3 group: 2 } }\n'
    with pytest.raises(NetdefError) as e:
        parse_text(text)
    assert "group 2 does not divide the 3 input channels" in e.value.message and "(bottoms: data [2, 3, 8, 8])" in e.value.message
    assert e.value.hint


def test_kernel_larger_than_padded_input():
    text = HEADER + 'layer { name: "k" type: "Convolution" bottom: "data" top: "k" convolution_param { num_output: 4 kernel_size: 11 pad: 1 } }\n'
    with pytest.raises(NetdefError, match="larger than the padded input 10"):
        parse_text(text)


def test_schema_keeps_caffes_field_numbers():
    f = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert (f["name"].number, f["type"].number, f["blobs"].number, f["convolution_param"].number,
            f["batch_norm_param"].number, f["scale_param"].number) == (1, 2, 7, 106, 139, 142)
    n = caffe_pb2.NetParameter.DESCRIPTOR.fields_by_name
    assert (n["layer"].number, n["layers"].number) == (100, 2)
    v1 = caffe_pb2.V1LayerParameter.DESCRIPTOR.fields_by_name
    assert (v1["name"].number, v1["type"].number, v1["blobs"].number, v1["blobs_lr"].number) == (4, 5, 6, 7)


def test_any_caffe_name_compiles_and_keeps_its_name(tmp_path):
    """Caffe accepts any layer or blob name: keywords, nn.Module attributes, Unicode that is
    no identifier, and the attributes a module instance holds (`training`, `_modules`).
    Submodules get safe names; outputs, weights and the record keep Caffe's."""
    from tests.nets import parse_text
    names = ["class", "lambda", "eval", "train", "to", "type", "float", "x²", "training", "_modules",
             "_parameters", "shape_env", "meta"]
    text = 'name: "n"\nlayer { name: "in" type: "Input" top: "input.1" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }\n'
    prev = "input.1"
    for n in names:
        text += 'layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" convolution_param { num_output: 2 kernel_size: 1 } }\n' % (n, prev, n)
        prev = n
    net = parse_text(text)
    weights = {n: [torch.full((2, 2, 1, 1), 0.5).numpy(), torch.zeros(2).numpy()] for n in names}
    model = netdef.compile_net(net, weights)
    assert sorted(netdef.record(model).layer_names.values()) == sorted(names)
    assert model.train is not None and callable(model.eval) and model.eval() is model
    assert model.training is False and isinstance(model._modules, dict)
    out = model(torch.ones(1, 2, 3, 3))
    assert list(out) == ["meta"] and torch.allclose(out["meta"], torch.ones(1, 2, 3, 3))
    netdef.export(model, tmp_path / "w.caffemodel", tmp_path / "n.prototxt")
    again = netdef.load(tmp_path / "n.prototxt", weights=tmp_path / "w.caffemodel")
    assert torch.equal(again(torch.ones(1, 2, 3, 3))["meta"], out["meta"])

"""What the compiler knows about a layer type comes from its LayerDef: a type a user
registers is read, shaped, summarised, drawn, converted and run like a built-in one, and a
data layer's shapes come from the source-shapes function registered for its type."""
import pytest
import torch

import netdef
from compiler.backends import draw, dsl_writer
from compiler.backends.summary import format_summary, summarize
from compiler.errors import NetdefError
from compiler.frontends import dsl
from compiler.frontends.prototxt import parse_net_text
from compiler.frontends.upgrade import upgrade_layers
from compiler.layers import registry
from compiler.layers.base import prod
from tests.nets import compile_text, inputs, layer, parse_text


class Dense(netdef.LayerDef):
    """A user's fully connected layer over the last axis, reading inner_product_param."""
    type = "Dense"
    param_field = "inner_product_param"
    blob_names = ("weight",)
    conv_fc_macs = True
    draw_color = "#123456"

    def shape(self, layer, shapes):
        return [tuple(shapes[0][:-1]) + (self.params(layer).num_output,)]

    def blob_shapes(self, layer, shapes):
        return [(self.params(layer).num_output, shapes[0][-1])]

    def macs(self, layer, shapes, out_shapes):
        return prod(shapes[0][1:]) * self.params(layer).num_output

    def draw_label(self, layer):
        return "dense to %d" % self.params(layer).num_output

    def lower(self, layer, shapes):
        return torch.nn.Linear(shapes[0][-1], self.params(layer).num_output, bias=False)


class Mish(netdef.LayerDef):
    """A user's activation that nets write in place, called `mish` in the netdef language."""
    type = "Mish"
    in_place = True
    dsl_name = "mish"

    def shape(self, layer, shapes):
        return [shapes[0]]

    def lower(self, layer, shapes):
        return torch.nn.Mish()


NET = inputs(data=(2, 3, 4)) + layer("fc", "Dense", ["data"], "inner_product_param { num_output: 5 }") + \
    layer("act", "Mish", ["fc"], tops=["fc"])


@pytest.fixture
def user_types():
    for defn in (Dense(), Mish()):
        netdef.register_layer(defn)
    yield
    for name in ("Dense", "Mish"):
        registry.unregister(name)


def test_a_registered_type_runs_like_a_built_in(user_types):
    weight = torch.randn(5, 4)
    model = compile_text(NET, {"fc": [weight.numpy()]})
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(model(x)["fc"], torch.nn.functional.mish(x @ weight.T))


def test_a_registered_type_is_summarised_like_a_built_in(user_types):
    rows, totals = summarize(parse_text(NET))
    fc = next(r for r in rows if r["name"] == "fc")
    assert fc["params"] == 20 and fc["macs"] == 3 * 4 * 5
    # conv_fc_macs puts it in the total the classic papers count.
    assert totals["conv_fc_macs"] == totals["macs"] == 60
    assert "fc" in format_summary(parse_text(NET))


def test_a_registered_type_is_drawn_like_a_built_in(user_types):
    view = draw.build_view(parse_text(NET))
    box = next(n for n in view["nodes"] if n["name"] == "fc")
    # Written in place, the Mish folds into the box of the layer it follows.
    assert [x["name"] for x in box["layers"]] == ["fc", "act"]
    assert box["layers"][0]["key"] == "dense to 5" and box["params"] == 20
    assert 'fillcolor="#123456"' in draw.to_dot(view)


def test_a_registered_type_is_converted_like_a_built_in(user_types):
    proto, blocks, lines = parse_net_text(NET, "t.prototxt")
    params = [l.param for l in upgrade_layers(proto, blocks, "t.prototxt", lines)]
    text = dsl_writer.to_dsl("t", params)
    # Its parameter field gives its keywords; its in-place flag and language name make it
    # a link of the chain, as `-> relu` is.
    assert "fc = data -> Dense(num_output=5) -> mish as act" in text
    assert list(dsl.load_proto("t.net", text=text).layer) == params


def test_source_shapes_give_a_data_layers_tops(tmp_path):
    calls = []

    def dummy_data_shapes(layer, net_file):
        calls.append((layer.name, net_file))
        return [(2, 3, 8, 8), (2,)]

    # DummyData: a data layer type that netdef's data package gives no reader (it registers
    # ImageData, Data and HDF5Data), so the hook is this test's alone.
    text = 'layer { name: "in" type: "DummyData" top: "data" top: "label" }\n' + \
           layer("conv", "Convolution", ["data"], "convolution_param { num_output: 4 kernel_size: 3 }")
    path = tmp_path / "train.prototxt"
    path.write_text(text)
    with pytest.raises(NetdefError, match="no reader for its source"):
        netdef.parse(path)
    registry.register_source_shapes("DummyData", dummy_data_shapes)
    try:
        net = netdef.parse(path)
        assert net.shape("conv") == (2, 4, 6, 6) and net.shape("label") == (2,)
        assert calls == [("in", str(path))]
        # A shape the user gives wins over the source's.
        assert netdef.parse(path, input_shapes={"data": (1, 3, 10, 10)}).shape("conv") == (1, 4, 8, 8)
        with pytest.raises(ValueError, match="already has"):
            registry.register_source_shapes("DummyData", dummy_data_shapes)
    finally:
        registry.unregister_source_shapes("DummyData")


@pytest.mark.parametrize("answer, message", [
    ([(2, 3, 8, 8)], "gives 1 top shapes for its 2 tops"),
    (NetdefError("list.txt", None, None, "cannot read the first image"), "cannot read the first image"),
])
def test_source_shapes_failures_are_located_errors(tmp_path, answer, message):
    def shapes(layer, net_file):
        if isinstance(answer, Exception):
            raise answer
        return answer

    path = tmp_path / "train.prototxt"
    path.write_text('layer { name: "in" type: "DummyData" top: "data" top: "label" }\n')
    registry.register_source_shapes("DummyData", shapes)
    try:
        with pytest.raises(NetdefError) as e:
            netdef.parse(path)
    finally:
        registry.unregister_source_shapes("DummyData")
    assert message in str(e.value)

"""The torch.fx backend's own choices: BatchNorm + Scale run as one call, in-place sums,
and neither changes what any user-visible blob holds, in TEST or TRAIN mode."""
import torch

import netdef
from tests.nets import HEADER, parse_text

NET = HEADER + '''
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bnout" batch_norm_param { moving_average_fraction: 0.9 } }
layer { name: "sc" type: "Scale" bottom: "bnout" top: "scout" scale_param { bias_term: true } }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "scout" bottom: "conv2" top: "sum" }
layer { name: "relu" type: "ReLU" bottom: "sum" top: "sum" }
'''


def weights(net):
    g = torch.Generator().manual_seed(0)
    out = {}
    for layer in net.layers:
        shapes = [net.blobs[b].shape for b in layer.bottoms]
        blobs = [torch.rand(s, generator=g) + 0.5 for s in layer.defn.blob_shapes(layer, shapes)]
        if layer.type == "BatchNorm":
            blobs[2] = torch.tensor([2.0])
        out[layer.name] = [b.numpy() for b in blobs]
    return out


def build(outputs):
    net = parse_text(NET)
    return netdef.compile_net(net, weights(net), outputs=outputs)


def test_batchnorm_and_scale_become_one_call_and_the_sum_runs_in_place():
    model = build(None)
    called = {n.target for n in model.graph.nodes if n.op == "call_module"}
    assert "bn" not in called and "sc" not in called
    assert type(model.sum).__name__ == "InPlaceSum"
    # Names and state_dict keys are Caffe's, fused or not.
    assert {"bn.mean", "bn.variance", "bn.factor", "sc.weight", "sc.bias"} <= set(model.state_dict())


def test_fused_and_separate_layers_compute_the_same_in_test_and_train_modes():
    x = torch.randn(2, 3, 8, 8)
    for train in (False, True):
        results = []
        # Returning the BatchNorm's output keeps the two layers apart.
        for outputs in (["sum"], ["bnout", "sum"]):
            model = build(outputs)
            model.train(train)
            xi = x.clone().requires_grad_()
            out = model(xi)
            out["sum"].sum().backward()
            buffers = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("bn.")}
            results.append((out["sum"].detach(), xi.grad, model.sc.weight.grad, buffers))
        (y0, g0, w0, b0), (y1, g1, w1, b1) = results
        torch.testing.assert_close(y0, y1)
        torch.testing.assert_close(g0, g1)
        torch.testing.assert_close(w0, w1)
        for k in b0:
            torch.testing.assert_close(b0[k], b1[k])


def test_a_returned_batchnorm_output_is_not_fused():
    model = build(["bnout", "sum"])
    assert {"bn", "sc"} <= {n.target for n in model.graph.nodes if n.op == "call_module"}


def test_a_registered_replacement_of_scale_is_never_fused_or_folded():
    from compiler.layers import registry
    from compiler.layers.scale_bias import Scale

    class Doubling(netdef.LayerDef):
        type = "Scale"

        def shape(self, layer, shapes):
            return [shapes[0]]

        def lower(self, layer, shapes):
            return _Double()

    class _Double(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    builtin = registry.get("Scale")
    registry.register(Doubling(), replace=True)
    try:
        net = parse_text(NET)
        w = {k: v for k, v in weights(net).items() if k != "sc"}
        x = torch.randn(2, 3, 8, 8)
        for fast in (False, True):
            model = netdef.compile_net(net, w, fast=fast).eval()
            reference = netdef.compile_net(net, w, outputs=["bnout", "conv2"]).eval()
            with torch.no_grad():
                ref = reference(x)
                want = torch.relu(2 * ref["bnout"] + ref["conv2"])
                torch.testing.assert_close(model(x)["sum"], want)
    finally:
        registry.register(builtin, replace=True)
    assert isinstance(registry.get("Scale"), Scale)


def test_the_module_record_survives_copies_and_the_fast_path():
    import copy
    model = build(None)
    rec = netdef.record(model)
    assert rec.input_names == ["data"] and rec.output_names == ["sum"]
    assert rec.layer_names["conv"] == "conv" and rec.weights.kept_fillers == ()
    deep = copy.deepcopy(model)
    assert netdef.record(deep).output_names == ["sum"] and netdef.record(deep).net is not rec.net
    assert netdef.record(copy.copy(model)) is rec
    # A deep copy exports like the original (it raised AttributeError when the record was
    # attributes bolted onto the module).
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(deep.eval()(x)["sum"], model.eval()(x)["sum"])
    fast = netdef.compile_net(parse_text(NET), weights(parse_text(NET)), fast=True)
    assert {l.type for l in netdef.record(fast).net.layers} == {"Input", "Convolution", "Eltwise", "ReLU"}


def test_export_of_a_deep_copy(tmp_path):
    import copy
    netdef.export(copy.deepcopy(build(None)), tmp_path / "w.caffemodel", tmp_path / "n.prototxt")
    again = netdef.load(tmp_path / "n.prototxt", weights=tmp_path / "w.caffemodel")
    assert netdef.record(again).output_names == ["sum"]


def test_a_module_not_built_by_netdef_has_no_record():
    import pytest
    with pytest.raises(TypeError, match="not built by netdef"):
        netdef.record(torch.nn.Linear(2, 2))

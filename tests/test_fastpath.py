"""The inference fast path (compiler/backends/fold.py): BatchNorm and Scale folded into the
convolution before them, channels_last weights, same outputs under the same names."""
import json

import numpy as np
import torch

import netdef
from compiler.backends.torch_weights import module_blobs
from compiler.backends.fold import find_chains
from tests.conftest import GOLDEN, needs_shared, shared_tool
from tests.nets import HEADER, parse_text

BN = 'batch_norm_param { use_global_stats: true eps: 0.001 }'
NET = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" %(bn)s }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "c2" convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "bn2" type: "BatchNorm" bottom: "c2" top: "b2" }
layer { name: "sc2" type: "Scale" bottom: "b2" top: "s2" scale_param { bias_term: false } }
layer { name: "conv3" type: "Convolution" bottom: "s2" top: "c3" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "bn3" type: "BatchNorm" bottom: "c3" top: "b3" }
layer { name: "fc" type: "InnerProduct" bottom: "b3" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "fc3" type: "InnerProduct" bottom: "c3" top: "fc3" inner_product_param { num_output: 2 } }
layer { name: "conv4" type: "Convolution" bottom: "conv1" top: "c4" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "conv5" type: "Convolution" bottom: "conv1" top: "c5" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "res" type: "Eltwise" bottom: "c4" bottom: "c5" top: "res" }
layer { name: "res_relu" type: "ReLU" bottom: "res" top: "res" }
layer { name: "res2" type: "Eltwise" bottom: "res" bottom: "c3" top: "res2" }
layer { name: "fc4" type: "InnerProduct" bottom: "res2" top: "fc4" inner_product_param { num_output: 2 } }
''' % {"bn": BN}


def weights(net, seed=0):
    """Random blobs; BatchNorm statistics stored as Caffe stores them (sums times factor)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, blobs in module_blobs(net, netdef.compile_net(net)).items():
        if net.layer(name).type == "BatchNorm":
            c = blobs[0].shape[0]
            out[name] = [rng.standard_normal(c).astype(np.float32) * 3,
                         rng.uniform(0.5, 2, c).astype(np.float32) * 3, np.array([3], np.float32)]
        else:
            out[name] = [rng.standard_normal(b.shape).astype(np.float32) for b in blobs]
    return out


def assert_close(got, want):
    """The golden cases' rule: |got - want| <= 1e-4 * max(1, max |want|) + 1e-5."""
    tol = 1e-4 * max(1.0, want.abs().max().item()) + 1e-5
    assert (got - want).abs().max().item() <= tol


def run(model, x):
    with torch.no_grad():
        return model(x)


def test_folds_exactly_the_chains_nothing_else_sees():
    net = parse_text(NET)
    chains = [tuple(l and l.name for l in c) for c in find_chains(net, net.outputs)]
    # conv3's output is read by bn3 and by fc3: it stays.
    assert chains == [("conv1", "bn1", "sc1"), ("conv2", "bn2", "sc2")]
    # A returned blob ends its chain: the folded conv2 computes b2, and sc2 stays.
    chains = [tuple(l and l.name for l in c) for c in find_chains(net, net.outputs + ["b2"])]
    assert chains == [("conv1", "bn1", "sc1"), ("conv2", "bn2", None)]
    # A returned convolution output folds nothing into it.
    assert [c[0].name for c in find_chains(net, net.outputs + ["c2"])] == ["conv1"]


def test_fast_module_computes_the_same_under_the_same_names():
    net = parse_text(NET)
    w = weights(net)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32))
    plain = netdef.compile_net(net, w, outputs=["conv1", "s2", "fc"])
    fast = netdef.compile_net(net, w, outputs=["conv1", "s2", "fc"], fast=True)
    want, got = run(plain, x), run(fast, x)
    assert list(got) == ["conv1", "s2", "fc"]
    for name in want:
        assert_close(got[name], want[name])
    # The folded layers and the blobs between them are gone, from the module and the IR.
    folded = netdef.record(fast).net
    modules = dict(fast.named_children())
    assert not {"bn1", "sc1", "bn2", "sc2"} & set(modules) and "bn3" in modules
    assert [l.name for l in folded.layers] == ["input", "conv1", "relu1", "conv2", "conv3", "bn3", "fc", "fc3",
                                                "conv4", "conv5", "res", "res_relu", "res2", "fc4"]
    assert not {"c2", "b2"} & set(folded.blob_order)
    assert folded.layer("conv2").param.top == ["s2"] and modules["conv2"].bias is not None
    assert modules["conv1"].weight.is_contiguous(memory_format=torch.channels_last)
    # The original net is untouched.
    assert [l.name for l in net.layers][2:4] == ["bn1", "sc1"]


def test_in_place_only_where_no_one_else_sees_the_bottom():
    net = parse_text(NET)
    w = weights(net)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    modules = dict(netdef.compile_net(net, w, fast=True).named_children())
    # relu1's bottom is the folded conv1's fresh output; res sums two fresh conv outputs and
    # res_relu rectifies that sum. res2's bottoms are a ReLU output (its backward needs it)
    # and conv3's output, which fc3 reads too: it stays out of place.
    assert modules["relu1"].inplace and modules["res_relu"].inplace
    assert type(modules["res"]).__name__ == "InPlaceSum"
    assert type(modules["res2"]).__name__ == "CaffeEltwise"
    # Autograd still works through the in-place layers, and the input gradient is the
    # plain module's.
    grads = []
    for fast in (False, True):
        model = netdef.compile_net(net, w, fast=fast)
        x.grad = None
        out = model(x)
        (out["fc"].sum() + out["fc3"].sum() + out["fc4"].sum()).backward()
        grads.append(x.grad.clone())
    assert_close(grads[1], grads[0])


def test_in_place_leaves_returned_blobs_alone():
    net = parse_text(NET)
    w = weights(net)
    x = torch.randn(2, 3, 8, 8)
    outputs = ["c4", "res", "fc4"]
    fast = netdef.compile_net(net, w, outputs=outputs, fast=True)
    modules = dict(fast.named_children())
    # c4 is returned, so the sum goes into c5.
    assert type(modules["res"]).__name__ == "InPlaceSum" and modules["res"].into == 1
    want, got = run(netdef.compile_net(net, w, outputs=outputs), x), run(fast, x)
    for name in outputs:
        assert_close(got[name], want[name])


def test_net_with_a_data_layer_folds_with_the_given_input_shapes():
    # A Data layer's tops are inputs like an Input layer's: the folded net is reshaped
    # with their shapes too (it used to fail: only Input tops were carried over).
    data = 'layer { name: "data" type: "Data" top: "data" top: "label" }\n'
    text = data + NET[len(HEADER):]
    net = parse_text(text, input_shapes={"data": (2, 3, 8, 8), "label": (2,)})
    w = weights(net)
    x = torch.randn(2, 3, 8, 8)
    label = torch.zeros(2)
    fast = netdef.compile_net(net, w, fast=True)
    assert netdef.record(fast).input_names == ["data", "label"]
    with torch.no_grad():
        want, got = netdef.compile_net(net, w)(x, label), fast(x, label)
    for name in want:
        assert_close(got[name], want[name])


def test_batchnorm_with_batch_statistics_is_not_folded():
    text = NET.replace(BN, "batch_norm_param { use_global_stats: false }")
    assert [c[0].name for c in find_chains(parse_text(text), ["fc"])] == ["conv2"]
    # In the TRAIN phase an unset use_global_stats means batch statistics too.
    assert find_chains(parse_text(NET, phase="TRAIN"), ["fc"])[0][0].name == "conv1"
    assert len(find_chains(parse_text(NET, phase="TRAIN"), ["fc"])) == 1


def test_exported_fast_net_is_a_smaller_caffe_net_with_the_same_outputs(tmp_path):
    net = parse_text(NET)
    w = weights(net)
    x = torch.randn(2, 3, 8, 8)
    fast = netdef.compile_net(net, w, fast=True)
    netdef.export(fast, tmp_path / "fast.caffemodel", tmp_path / "fast.prototxt")
    again = netdef.load(tmp_path / "fast.prototxt", weights=tmp_path / "fast.caffemodel")
    assert len(netdef.record(again).net.layers) == len(net.layers) - 4
    assert_close(run(again, x)["fc"], run(netdef.compile_net(net, w), x)["fc"])


@needs_shared
def test_resnet50_fast_path_matches_caffe(tmp_path):
    case_dir = GOLDEN / "nets" / "resnet50"
    case = json.loads((case_dir / "case.json").read_text())
    inputs = dict(np.load(case_dir / "input.npz"))
    net = netdef.parse(case_dir / case["prototxt"], input_shapes={k: v.shape for k, v in inputs.items()})
    recipe = shared_tool("caffe_weights").recipe_arrays(case["params"])
    model = netdef.compile_net(net, recipe, outputs="all", fast=True)
    kinds = {l.type for l in netdef.record(model).net.layers}
    assert "BatchNorm" not in kinds and "Scale" not in kinds
    assert sum(l.type == "BatchNorm" for l in net.layers) == 53
    out = run(model, torch.from_numpy(inputs["data"]))
    # Every Caffe blob name is still there (ResNet's BatchNorm and Scale are in place), and
    # check_golden compares each against Caffe: in full where expected.npz holds the blob,
    # at its 64 sample positions otherwise.
    assert set(out) == set(net.blob_order)
    path = tmp_path / "out.npz"
    np.savez(path, **{k: v.contiguous().numpy() for k, v in out.items()})
    ok, line = shared_tool("check_golden").check_case(str(case_dir), str(path))
    assert ok, line


def test_cli_run_fast(tmp_path):
    from netdef.cli import main
    (tmp_path / "net.prototxt").write_text(NET)
    net = parse_text(NET)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", data=x)
    netdef.save(netdef.compile_net(net, weights(net)), tmp_path / "w.netdef")
    for flag, name in (([], "plain"), (["--fast"], "fast")):
        assert main(["run", str(tmp_path / "net.prototxt"), "--weights", str(tmp_path / "w.netdef"),
                     "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / (name + ".npz"))]
                    + flag) == 0
    plain, fast = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "fast.npz")
    assert plain.files == fast.files == ["fc", "fc3", "fc4"]
    for name in plain.files:
        assert_close(torch.from_numpy(fast[name]), torch.from_numpy(plain[name]))


# The plain module (not only the fast path) computes ReLU in place where no one can tell.
RELU_NET = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "c2" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "c2" top: "r2" }
layer { name: "sig" type: "Sigmoid" bottom: "r2" top: "sig" }
layer { name: "relu3" type: "ReLU" bottom: "sig" top: "sig" }
layer { name: "conv4" type: "Convolution" bottom: "sig" top: "c4" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "split" type: "Split" bottom: "c4" top: "s1" top: "s2" }
layer { name: "relu4" type: "ReLU" bottom: "s1" top: "s1" }
layer { name: "conv5" type: "Convolution" bottom: "s2" top: "c5" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu5" type: "ReLU" bottom: "c5" top: "r5" }
layer { name: "fc" type: "InnerProduct" bottom: "c5" top: "fc" inner_product_param { num_output: 3 } }
'''


def test_plain_module_relu_in_place_only_where_no_one_sees_the_bottom():
    net = parse_text(RELU_NET)
    w = {name: [b + 0.1 for b in blobs] for name, blobs in weights(net).items()}
    outputs = ["conv1", "c2", "r2", "sig", "s1", "s2", "c5", "r5", "fc"]
    model = netdef.compile_net(net, w, outputs=outputs)
    in_place = {name for name, m in model.named_children() if getattr(m, "inplace", False)}
    # relu1: a convolution's output read by it alone. relu2: c2 is returned. relu3: the
    # Sigmoid's backward reads its output. relu4: Split's tops are one tensor (Caffe
    # shares them). relu5: c5 is also read by fc.
    assert in_place == {"relu1"}
    assert {n for n, m in netdef.compile_net(net, w, outputs=["fc", "r5", "s1"]).named_children()
            if getattr(m, "inplace", False)} == {"relu1", "relu2"}
    # Same values and input gradient as with every ReLU out of place.
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    results = []
    for force_out_of_place in (False, True):
        m = netdef.compile_net(net, w, outputs=outputs)
        if force_out_of_place:
            for sub in m.modules():
                if isinstance(sub, torch.nn.ReLU):
                    sub.inplace = False
        x.grad = None
        out = m(x)
        sum(v.sum() for v in out.values()).backward()
        results.append(({k: v.detach().clone() for k, v in out.items()}, x.grad.clone()))
    for name in outputs:
        assert torch.equal(results[0][0][name], results[1][0][name]), name
    assert torch.equal(results[0][1], results[1][1])


def test_cli_compile_fast_exports_the_folded_net(tmp_path):
    from netdef.cli import main
    (tmp_path / "net.prototxt").write_text(NET)
    net = parse_text(NET)
    w = weights(net)
    netdef.save(netdef.compile_net(net, w), tmp_path / "w.netdef")
    assert main(["compile", str(tmp_path / "net.prototxt"), "--weights", str(tmp_path / "w.netdef"), "--fast",
                 "--export-caffemodel", str(tmp_path / "f.caffemodel"),
                 "--export-prototxt", str(tmp_path / "f.prototxt")]) == 0
    folded = netdef.load(tmp_path / "f.prototxt", weights=tmp_path / "f.caffemodel")
    assert not {"bn1", "sc1", "bn2", "sc2"} & {l.name for l in netdef.record(folded).net.layers}
    x = torch.randn(2, 3, 8, 8)
    want = run(netdef.compile_net(net, w), x)
    got = run(folded, x)
    for name in want:
        assert_close(got[name], want[name])

"""compile=True / --compile (netdef/inference/compiled.py): the fast path under torch.compile
with freezing, its program for other batch sizes, its record, bf16, and the fallback to the
eager fast path.

Only small nets compile here (a compile takes seconds even for them); ResNet-50 and
GoogLeNet compile against their goldens in benchmarks/bench_compile.py, which `make test`
does not run.
"""
import numpy as np
import pytest
import torch
import torch._inductor.config as inductor_config
from torch._dynamo.utils import counters
from torch._inductor.utils import run_and_get_code

import netdef
from compiler.layers import registry
from netdef.inference import compile_for_inference
from tests.nets import HEADER, parse_text, randn

NET = HEADER + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''
OUTPUTS = ["conv1", "fc", "prob"]


def weights(net):
    """Non-zero blobs (Caffe's default filler is 0); BatchNorm's statistics as Caffe stores them."""
    return {"conv1": [randn(8, 3, 3, 3, seed=1), randn(8, seed=2)],
            "bn1": [randn(8, seed=3), np.abs(randn(8, seed=4)) + 0.5, np.array([2.0], np.float32)],
            "sc1": [randn(8, seed=5), randn(8, seed=6)],
            "fc": [randn(5, 8 * 4 * 4, seed=7) * 0.1, randn(5, seed=8)]}


def assert_close(got, want):
    """The golden cases' rule: |got - want| <= 1e-4 * max(1, max |want|) + 1e-5."""
    tol = 1e-4 * max(1.0, want.abs().max().item()) + 1e-5
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max().item() <= tol


@pytest.fixture(scope="module")
def compiled():
    """(compiled module, plain eager module, the lines it logged, inductor's generated code of
    the warm-up). Compiled once for the tests below: compiling is the slow part. Without
    inductor's caches, so that the code is generated here, not read from a previous run."""
    net = parse_text(NET)
    w = weights(net)
    lines = []
    fast = netdef.compile_net(net, w, outputs=OUTPUTS, fast=True)
    with inductor_config.patch(force_disable_caches=True):
        model, code = run_and_get_code(compile_for_inference, fast, log=lines.append)
    return model, netdef.compile_net(net, w, outputs=OUTPUTS).eval(), lines, "\n".join(code)


def test_compiled_module_computes_caffes_blobs_under_their_names(compiled):
    model, plain, lines, _ = compiled
    assert model.compiled and model.fallback is None and model.warmup_seconds > 0
    assert len(lines) == 1 and lines[0].startswith("netdef: compiled t in ")
    x = torch.from_numpy(randn(2, 3, 8, 8, seed=9))
    got = model(x)
    assert list(got) == OUTPUTS
    with torch.no_grad():
        want = plain(x)
    for name in OUTPUTS:
        assert_close(got[name], want[name])
    assert_close(model(data=x)["prob"], want["prob"])      # inputs by Caffe blob name too


def test_weights_are_frozen_and_convolutions_prepacked(compiled):
    """Freezing really happens: the weights are constants of the generated code (`_frozen_param`),
    and the convolution is oneDNN's with its weight packed at compile time and the ReLU fused
    in. (torch.compile(options={"freezing": True}) alone compiles the weights as inputs.)"""
    code = compiled[3]
    assert "_frozen_param" in code
    if torch.backends.mkldnn.is_available():
        assert "torch.ops.mkldnn._convolution_pointwise.default(" in code and "'relu'" in code
        assert "extern_kernels.convolution(" not in code


def test_other_batch_sizes_run_the_program_compiled_at_load(compiled):
    """The warm-up's batch has its own program; the batch-dynamic one is compiled at load
    time too (one line says both), and serves every other size without compiling again."""
    model, plain, lines, _ = compiled
    frames = counters["frames"]["ok"]
    for batch in (3, 7, 2, 5, 2):
        x = torch.from_numpy(randn(batch, 3, 8, 8, seed=batch))
        with torch.no_grad():
            assert_close(model(x)["prob"], plain(x)["prob"])
    assert counters["frames"]["ok"] == frames
    assert len(lines) == 1 and lines[0].endswith("and a batch-dynamic program for other sizes)")


def test_other_batch_sizes_fall_back_at_load_in_one_line_where_their_compile_fails(monkeypatch):
    net = parse_text(HEADER + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    lines = []
    real = torch.compile

    def static_only(module, dynamic=None, options=None):
        """torch.compile with the C++ compiler gone for the batch-dynamic program only."""
        compiled = real(module, dynamic=dynamic, options=options)
        if dynamic is False:
            return compiled

        def call(*args, **kwargs):
            with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++"), "force_disable_caches": True}):
                return compiled(*args, **kwargs)
        return call
    monkeypatch.setattr(torch, "compile", static_only)
    model = compile_for_inference(netdef.compile_net(net, outputs=["r"], fast=True), log=lines.append)
    assert model.compiled and len(lines) == 2
    assert lines[1].startswith("netdef: torch.compile failed for other batch sizes (InvalidCxxCompiler: ")
    assert lines[1].endswith("); they run the eager fast path")
    x = torch.from_numpy(randn(3, 3, 8, 8, seed=1))
    assert torch.equal(model(x)["r"], x.relu())
    assert len(lines) == 2


def test_record_survives_compilation(compiled):
    model, _, _, _ = compiled
    record = netdef.record(model)
    assert record is netdef.record(model.module)
    assert record.output_names == OUTPUTS and record.input_names == ["data"]
    # It is the fast path's folded net: BatchNorm and Scale are in conv1.
    assert [l.type for l in record.net.layers] == ["Input", "Convolution", "ReLU", "Pooling",
                                                    "InnerProduct", "Softmax"]
    assert list(model.state_dict()) == ["module." + k for k in model.module.state_dict()]
    with pytest.raises(netdef.NetdefError, match="inference only"):
        model.train()


def test_bf16_is_opt_in_and_returns_float32():
    net = parse_text(NET)
    w = weights(net)
    model = netdef.compile_net(net, w, outputs=OUTPUTS, compile=True, precision="bf16")
    x = torch.from_numpy(randn(2, 3, 8, 8, seed=9))
    got = model(x)["fc"]
    with torch.no_grad():
        want = netdef.compile_net(net, w, outputs=OUTPUTS)(x)["fc"]
    assert got.dtype == torch.float32
    err = (got - want).abs().max().item()
    # bf16 keeps 8 bits of mantissa: close to float32, but not exact.
    assert 0 < err < 0.05 * want.abs().max().item()


def test_precision_without_compile_is_refused():
    with pytest.raises(netdef.NetdefError, match="compile=True"):
        netdef.compile_net(parse_text(NET), precision="bf16")


def test_no_cxx_compiler_falls_back_to_the_eager_fast_path_in_one_line():
    net = parse_text(NET)
    w = weights(net)
    lines = []
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++")}):
        model = compile_for_inference(netdef.compile_net(net, w, outputs=OUTPUTS, fast=True),
                                      log=lines.append)
    assert not model.compiled and "InvalidCxxCompiler" in model.fallback
    assert lines == ["netdef: torch.compile failed (%s); running the eager fast path" % model.fallback]
    assert "\n" not in lines[0]
    x = torch.from_numpy(randn(2, 3, 8, 8, seed=9))
    with torch.no_grad():
        assert_close(model(x)["prob"], netdef.compile_net(net, w, outputs=OUTPUTS)(x)["prob"])


@torch.library.custom_op("netdef_test::plus_one", mutates_args=())
def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


@plus_one.register_fake
def _(x):
    # What torch.compile traces with: an op without a working fake (meta) version is one
    # torch.compile cannot take, while it runs eagerly.
    raise RuntimeError("plus_one has no compiled version")


class PlusOne(netdef.LayerDef):
    """A user's layer built on that op."""
    type = "PlusOne"

    def shape(self, layer, shapes):
        return [shapes[0]]

    def lower(self, layer, shapes):
        return _PlusOne()


class _PlusOne(torch.nn.Module):
    def forward(self, x):
        return plus_one(x)


def test_unsupported_layer_falls_back_with_the_reason(capsys):
    netdef.register_layer(PlusOne())
    try:
        net = parse_text(HEADER + 'layer { name: "r" type: "PlusOne" bottom: "data" top: "r" }\n')
        model = netdef.compile_net(net, compile=True)
    finally:
        registry.unregister("PlusOne")
    err = capsys.readouterr().err
    assert not model.compiled and "plus_one has no compiled version" in model.fallback
    assert err == "netdef: torch.compile failed (%s); running the eager fast path\n" % model.fallback
    x = torch.zeros(3, 3, 8, 8)
    assert torch.equal(model(x)["r"], x + 1)


def test_a_broken_net_is_not_reported_as_a_compile_failure():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("the net itself is wrong")

    class BrokenDef(PlusOne):
        type = "BrokenLayer"

        def lower(self, layer, shapes):
            return Broken()

    netdef.register_layer(BrokenDef())
    try:
        net = parse_text(HEADER + 'layer { name: "b" type: "BrokenLayer" bottom: "data" top: "b" }\n')
        with pytest.raises(ValueError, match="the net itself is wrong"):
            netdef.compile_net(net, compile=True)
    finally:
        registry.unregister("BrokenLayer")


def test_cli_run_compile_falls_back_in_one_line(tmp_path, capsys):
    """`run --compile` where compiling fails: one line on stderr, the eager fast path's
    results, exit 0. (Compiling succeeds in the tests above; here it must fail, quickly.)"""
    from netdef.cli import main
    (tmp_path / "net.prototxt").write_text(NET)
    net = parse_text(NET)
    netdef.save(netdef.compile_net(net, weights(net)), tmp_path / "w.netdef")
    np.savez(tmp_path / "in.npz", data=randn(4, 3, 8, 8, seed=3))
    common = ["run", str(tmp_path / "net.prototxt"), "--weights", str(tmp_path / "w.netdef"),
              "--input", str(tmp_path / "in.npz"), "--blobs", "all"]
    assert main(common + ["--output", str(tmp_path / "plain.npz")]) == 0
    capsys.readouterr()
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++")}):
        assert main(common + ["--output", str(tmp_path / "compiled.npz"), "--compile"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("netdef: torch.compile failed (InvalidCxxCompiler: ") and err.count("\n") == 1
    plain, fast = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "compiled.npz")
    assert set(plain.files) == set(fast.files)
    for name in plain.files:
        assert_close(torch.from_numpy(fast[name]), torch.from_numpy(plain[name]))

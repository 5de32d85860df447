"""A compiled net is an ordinary PyTorch module: dtype and device moves, autocast,
channels_last inputs, torch.compile without graph breaks, torch.export and ONNX export.
(TorchScript, which PyTorch no longer develops, is not a target: layers take any number of
bottoms and the backend calls fused functions with modules as arguments.)

ResNet-50 runs at 1x3x224x224: its pool5 is a 7x7 window without global_pooling, so by
Caffe's shape rule res5 must be at least 7x7, i.e. the input at least 224x224.
"""
import json

import numpy as np
import pytest
import torch

import netdef
from tests.conftest import CORPUS, GOLDEN, needs_shared, shared_tool

pytestmark = needs_shared

RESNET50 = CORPUS / "resnet" / "ResNet-50-deploy.prototxt"
LENET = CORPUS / "bvlc" / "mnist__lenet.prototxt"


def recipe(case):
    params = json.loads((GOLDEN / "nets" / case / "case.json").read_text())["params"]
    return shared_tool("caffe_weights").recipe_arrays(params)


@pytest.fixture(scope="module")
def resnet_weights():
    return recipe("resnet50")


@pytest.fixture
def resnet(resnet_weights):
    """A fresh ResNet-50 per call (moving a module changes it in place)."""
    def make(fast=False):
        net = netdef.parse(RESNET50, input_shapes={"data": (1, 3, 224, 224)})
        return netdef.compile_net(net, resnet_weights, outputs=["fc1000", "prob"], fast=fast).eval()
    return make


@pytest.fixture(scope="module")
def image():
    return torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))


@pytest.fixture(scope="module")
def reference(resnet_weights, image):
    net = netdef.parse(RESNET50, input_shapes={"data": (1, 3, 224, 224)})
    model = netdef.compile_net(net, resnet_weights, outputs=["fc1000", "prob"]).eval()
    with torch.no_grad():
        return model(image)["fc1000"]


def assert_close(got, want, rel=1e-4):
    """The golden cases' rule: |got - want| <= rel * max(1, max |want|) + 1e-5."""
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    assert got.shape == want.shape
    tol = rel * max(1.0, want.abs().max().item()) + 1e-5
    err = (got - want).abs().max().item()
    assert err <= tol, "max error %g > %g" % (err, tol)


def test_to_float64(resnet, image, reference):
    model = resnet().to(torch.float64)
    with torch.no_grad():
        out = model(image.double())
    assert out["fc1000"].dtype == torch.float64
    assert_close(out["fc1000"], reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("fast", [False, True])
def test_to_cuda(resnet, image, reference, fast):
    model = resnet(fast).to("cuda")
    with torch.no_grad():
        out = model(image.cuda())
    assert out["fc1000"].device.type == "cuda"
    assert_close(out["fc1000"], reference)


def test_autocast_bfloat16_on_cpu(resnet, image, reference):
    model = resnet()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(image)["fc1000"]
    assert out.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: 2% of the largest logit is far beyond its rounding
    # through 50 layers here, and far below what a wrong computation gives.
    assert_close(out, reference, rel=2e-2)


@pytest.mark.parametrize("fast", [False, True])
def test_channels_last_input(resnet, image, reference, fast):
    with torch.no_grad():
        out = resnet(fast)(image.contiguous(memory_format=torch.channels_last))
    assert_close(out["fc1000"], reference)


@pytest.mark.parametrize("fast", [False, True])
def test_torch_compile_sees_one_graph(resnet, image, fast):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(resnet(fast))(image)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def lenet():
    case = GOLDEN / "nets" / "mnist_lenet"
    inputs = dict(np.load(case / "input.npz"))
    net = netdef.parse(LENET, input_shapes={k: v.shape for k, v in inputs.items()})
    model = netdef.compile_net(net, recipe("mnist_lenet")).eval()
    return model, torch.from_numpy(inputs[netdef.record(model).input_names[0]])


def test_torch_compile_runs_with_fullgraph():
    # Inductor on LeNet: seconds; on ResNet-50 it takes about a minute on two cores.
    model, x = lenet()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert_close(compiled(x)["prob"], model(x)["prob"])


def test_onnx_export(resnet, image, tmp_path):
    import onnx
    from onnx.reference import ReferenceEvaluator
    # ResNet-50 exports to a valid ONNX model.
    program = torch.onnx.export(resnet(), (image,), dynamo=True)
    onnx.checker.check_model(program.model_proto)
    assert sum(n.op_type == "Conv" for n in program.model_proto.graph.node) == 53
    # LeNet's export computes what the module computes (ONNX's reference runtime; the
    # ResNet-50 one would take minutes in it).
    model, x = lenet()
    program = torch.onnx.export(model, (x,), dynamo=True)
    proto = program.model_proto
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert_close(torch.from_numpy(got), model(x)["prob"])


DETECTION_BOTTOMS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


@pytest.mark.parametrize("case, run", [("mobilenet_ssd", True), ("ssd300_vgg", False)])
def test_onnx_export_of_an_ssd_net_up_to_its_detection(case, run):
    """The DetectionOutput refuses export (tests/test_runtime_modules.py); the net up to
    its bottoms exports, and the module's detection_out submodule applied to the ONNX
    outputs gives the module's detections. (SSD300 only exports: its VGG would take
    minutes in ONNX's reference runtime.)"""
    onnx = pytest.importorskip("onnx", reason="ONNX export checks need the onnx package (test extra)")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (test extra)")
    from onnx.reference import ReferenceEvaluator
    case_dir = GOLDEN / "nets" / case
    prototxt = case_dir / json.loads((case_dir / "case.json").read_text())["prototxt"]
    x = torch.from_numpy(np.load(case_dir / "input.npz")["data"])
    model = netdef.load(prototxt, recipe(case), outputs=DETECTION_BOTTOMS)
    proto = torch.onnx.export(model, (x,), dynamo=True).model_proto
    onnx.checker.check_model(proto)
    if not run:
        return
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    got = dict(zip(DETECTION_BOTTOMS, (torch.from_numpy(np.array(g)) for g in got)))
    with torch.no_grad():
        want = model(x)
        for name in DETECTION_BOTTOMS:
            assert_close(got[name], want[name])
        # The priors are a constant of the input size, exported bit for bit.
        assert torch.equal(got["mbox_priorbox"], want["mbox_priorbox"])
        detections = model.detection_out(*(got[name] for name in DETECTION_BOTTOMS))
        assert_close(detections, netdef.load(prototxt, recipe(case))(x)["detection_out"])


def test_torch_export_resnet50_with_a_free_batch(resnet, image):
    model = resnet()
    batch = torch.export.Dim("batch", min=1, max=64)
    # Traced at batch 2 (export treats an example size of 1 as a constant), run at batch 3.
    program = torch.export.export(model, (torch.cat([image, -image]),), dynamic_shapes=({0: batch},))
    three = torch.cat([image, image.flip(3), 0.5 * image])
    with torch.no_grad():
        assert_close(program.module()(three)["prob"], model(three)["prob"])

"""The zoo (zoo_defs/*.net): each net built from the netdef language equals the published
prototxt it reproduces, layer by layer; counts match the papers and the lectures; and the
checked-in generated prototxts are what the sources generate today."""
import importlib.util

import pytest
from google.protobuf import text_format

import netdef
from compiler.backends.summary import summarize
from compiler.frontends import dsl
from compiler.frontends.prototxt import parse_net_text, read_text_file
from compiler.frontends import upgrade
from compiler.frontends.upgrade import upgrade_layers
from compiler.passes.phase import layer_included
from compiler.proto import caffe_pb2
from compiler.state import NetState
from tests.conftest import CORPUS, ROOT

ZOO_DIR = ROOT / "zoo_defs"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/caffe-corpus is absent")


def _generator():
    spec = importlib.util.spec_from_file_location("zoo_generate", ZOO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()

# generated file -> the published prototxt its net equals
PUBLISHED = {
    "ResNet-50-deploy.prototxt": "resnet/ResNet-50-deploy.prototxt",
    "ResNet-101-deploy.prototxt": "resnet/ResNet-101-deploy.prototxt",
    "ResNet-152-deploy.prototxt": "resnet/ResNet-152-deploy.prototxt",
    "VGG_ILSVRC_16_layers_deploy.prototxt": "vgg/VGG_ILSVRC_16_layers_deploy.prototxt",
    "VGG_ILSVRC_19_layers_deploy.prototxt": "vgg/VGG_ILSVRC_19_layers_deploy.prototxt",
    "AlexNet-deploy.prototxt": "bvlc/bvlc_alexnet__deploy.prototxt",
    "CaffeNet-deploy.prototxt": "bvlc/bvlc_reference_caffenet__deploy.prototxt",
    # its TEST phase; TRAIN adds the auxiliary classifiers and losses (tested below)
    "GoogLeNet.prototxt": "bvlc/bvlc_googlenet__deploy.prototxt",
    # the deploy file mixes V1 and V2 blocks (Caffe refuses it): compared block by block
    "NIN-deploy.prototxt": "nin/nin_imagenet__deploy.prototxt",
}

# file -> (learnable parameters, conv/fc multiply-accumulates per image, output, its shape)
# for the deploy nets: derived-facts.json's counts; ResNet-18/34: torchvision's published
# parameter counts (11,689,512 and 21,797,672); LeNet-5: 156 + 2,416 + 48,120 + 10,164
# + 850; the lecture's 5x5 convolution with and without a 1x1 bottleneck: 120,422,400
# and 12,443,648 multiplies.
COUNTS = {
    "ResNet-18-deploy.prototxt": (11689512, 1814073344, "prob", (1, 1000)),
    "ResNet-34-deploy.prototxt": (21797672, 3663761408, "prob", (1, 1000)),
    "ResNet-50-deploy.prototxt": (25557096, 3857973248, "prob", (1, 1000)),
    "ResNet-101-deploy.prototxt": (44549160, 7570194432, "prob", (1, 1000)),
    "ResNet-152-deploy.prototxt": (60192808, 11282415616, "prob", (1, 1000)),
    "VGG_ILSVRC_16_layers_deploy.prototxt": (138357544, 15470264320, "prob", (10, 1000)),
    "VGG_ILSVRC_19_layers_deploy.prototxt": (143667240, 19632062464, "prob", (10, 1000)),
    "AlexNet-deploy.prototxt": (60965224, 724406816, "prob", (10, 1000)),
    "CaffeNet-deploy.prototxt": (60965224, 724406816, "prob", (10, 1000)),
    "GoogLeNet.prototxt": (6998552, 1582671872, "prob", (10, 1000)),
    "NIN-deploy.prototxt": (7595176, 1100188800, "prob", (10, 1000, 1, 1)),
    "LeNet-5.prototxt": (61706, 416520, "prob", (1, 10)),
    "Inception-module.prototxt": (393472, 308281344, "output", (1, 256, 28, 28)),
    "Conv5x5.prototxt": (153632, 120422400, "conv5x5", (1, 32, 28, 28)),
    "Bottleneck.prototxt": (15920, 12443648, "conv5x5", (1, 32, 28, 28)),
}


def published_layers(rel):
    """The corpus file's layers as Caffe holds them after loading (legacy inputs -> an
    Input layer, V1 -> V2), every phase."""
    path = CORPUS / rel
    proto, blocks, lines = parse_net_text(read_text_file(path), str(path))
    if blocks["layer"] and blocks["layers"]:
        # NIN's deploy file: what its author meant, each block upgraded on its own (the
        # V2 Softmax comes last in the file, as it does here).
        layers = upgrade.legacy_inputs(proto, str(path))
        return proto.name, [l.param for l in layers] + \
            [upgrade.v1_to_v2(caffe_pb2.V1LayerParameter.FromString(w)) for w in blocks["layers"]] + \
            [caffe_pb2.LayerParameter.FromString(w) for w in blocks["layer"]]
    return proto.name, [l.param for l in upgrade_layers(proto, blocks, str(path), lines)]


def built(name, phase=None):
    source, net = GENERATE.ZOO[name]
    proto = dsl.load_proto(ZOO_DIR / source, net)
    return proto, [l for l in proto.layer if phase is None or layer_included(l, NetState(phase))]


def assert_same_layers(mine, theirs):
    assert [l.name for l in mine] == [l.name for l in theirs]
    for a, b in zip(mine, theirs):
        # Field by field: every field present in one is present, with the same value, in
        # the other (bottoms and tops included, so the connections are the same).
        assert a == b, "layer %s differs:\n--- built\n%s--- published\n%s" % (
            a.name, text_format.MessageToString(a), text_format.MessageToString(b))


def test_every_zoo_file_is_listed():
    assert set(PUBLISHED) <= set(GENERATE.ZOO) == set(COUNTS)
    assert {p.name for p in ZOO_DIR.glob("*.prototxt")} == set(GENERATE.ZOO)


@needs_corpus
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_built_net_equals_published(name):
    proto, layers = built(name, "TEST" if name == "GoogLeNet.prototxt" else None)
    net_name, theirs = published_layers(PUBLISHED[name])
    assert proto.name == net_name
    assert_same_layers(layers, theirs)


@pytest.mark.parametrize("name", sorted(GENERATE.ZOO))
def test_checked_in_prototxt_is_up_to_date(name):
    assert (ZOO_DIR / name).read_text() == GENERATE.generate(name), \
        "%s drifted from its source: run python zoo_defs/generate.py" % name


@needs_corpus
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_checked_in_prototxt_equals_published(name):
    path = ZOO_DIR / name
    _, blocks, _ = parse_net_text(read_text_file(path), str(path))
    layers = [caffe_pb2.LayerParameter.FromString(w) for w in blocks["layer"]]
    layers = [l for l in layers if name != "GoogLeNet.prototxt" or layer_included(l, NetState("TEST"))]
    assert_same_layers(layers, published_layers(PUBLISHED[name])[1])


def test_resnet_conv1_bias():
    # ResNet-50's conv1 has a bias (bias_term unset: Caffe's default, true); ResNet-101's
    # and -152's are written with bias_term: false. The zoo keeps the difference.
    def conv1(n):
        return next(l for l in built("ResNet-%d-deploy.prototxt" % n)[1] if l.name == "conv1").convolution_param
    assert not conv1(50).HasField("bias_term") and conv1(50).bias_term is True
    for n in (101, 152):
        assert conv1(n).HasField("bias_term") and conv1(n).bias_term is False


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_generated_prototxt_compiles_with_known_counts(name):
    # The user's first command: netdef compile zoo_defs/ResNet-152-deploy.prototxt.
    params, macs, output, shape = COUNTS[name]
    net = netdef.parse(ZOO_DIR / name)
    _, totals = summarize(net)
    assert (totals["params"], totals["conv_fc_macs"]) == (params, macs)
    assert net.shape(output) == shape
    if name.startswith("ResNet"):
        assert net.shape("pool1") == (1, 64, 56, 56)    # ceil pooling: 112 -> 56


@needs_corpus
def test_googlenet_train_phase_has_the_auxiliary_classifiers_of_train_val():
    _, train = built("GoogLeNet.prototxt", "TRAIN")
    _, theirs = published_layers("bvlc/bvlc_googlenet__train_val.prototxt")
    theirs = {l.name: l for l in theirs if layer_included(l, NetState("TRAIN"))}
    extra = [l for l in train if l.name.startswith(("loss1/", "loss2/", "loss3/loss3"))]
    assert len(extra) == 17
    for layer in extra:
        layer.ClearField("include")     # phase TRAIN here; train_val has them in both phases
        assert layer == theirs[layer.name], layer.name
    net = netdef.parse(ZOO_DIR / "GoogLeNet.prototxt", phase="TRAIN")
    assert {n: net.shape(n) for n in ("loss1/loss1", "loss2/loss2", "loss3/loss3")} == \
        {"loss1/loss1": (), "loss2/loss2": (), "loss3/loss3": ()}


def test_lecture_bottleneck_costs_a_tenth():
    per_layer = {}
    for name in ("Conv5x5.prototxt", "Bottleneck.prototxt"):
        rows, _ = summarize(netdef.parse(ZOO_DIR / name))
        per_layer[name] = {r["name"]: r["macs"] for r in rows if r["macs"]}
    assert per_layer["Conv5x5.prototxt"] == {"conv5x5": 28 * 28 * 32 * 5 * 5 * 192}
    assert per_layer["Bottleneck.prototxt"] == {"reduce1x1": 28 * 28 * 16 * 192, "conv5x5": 28 * 28 * 32 * 5 * 5 * 16}

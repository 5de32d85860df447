"""The zoo (zoo_defs/*.net): each net built from the netdef language equals the published
prototxt it reproduces, layer by layer, and the checked-in generated prototxts are what
the sources generate today."""
import importlib.util

import pytest
from google.protobuf import text_format

import netdef
from compiler.frontends import dsl
from compiler.frontends.prototxt import parse_net_text, read_text_file, upgrade_layers
from tests.conftest import CORPUS, ROOT

ZOO_DIR = ROOT / "zoo_defs"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/caffe-corpus is absent")


def _generator():
    spec = importlib.util.spec_from_file_location("zoo_generate", ZOO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()

# generated file -> the published prototxt it must equal
PUBLISHED = {
    "ResNet-50-deploy.prototxt": "resnet/ResNet-50-deploy.prototxt",
    "ResNet-101-deploy.prototxt": "resnet/ResNet-101-deploy.prototxt",
    "ResNet-152-deploy.prototxt": "resnet/ResNet-152-deploy.prototxt",
}


def published_layers(rel):
    """The corpus file's layers as Caffe holds them after loading (legacy inputs -> an
    Input layer, V1 -> V2), every phase."""
    path = CORPUS / rel
    proto, lines = parse_net_text(read_text_file(path), str(path))
    return proto.name, [l.param for l in upgrade_layers(proto, str(path), lines)]


def built(name):
    source, net = GENERATE.ZOO[name]
    return dsl.load_proto(ZOO_DIR / source, net)


def assert_same_layers(mine, theirs):
    assert [l.name for l in mine] == [l.name for l in theirs]
    for a, b in zip(mine, theirs):
        # Field by field: every field present in one is present, with the same value, in
        # the other (bottoms and tops included, so the connections are the same).
        assert a == b, "layer %s differs:\n--- built\n%s--- published\n%s" % (
            a.name, text_format.MessageToString(a), text_format.MessageToString(b))


def test_every_zoo_file_is_listed():
    assert set(GENERATE.ZOO) == set(PUBLISHED)
    assert {p.name for p in ZOO_DIR.glob("*.prototxt")} == set(GENERATE.ZOO)


@needs_corpus
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_built_net_equals_published(name):
    proto = built(name)
    net_name, layers = published_layers(PUBLISHED[name])
    assert proto.name == net_name
    assert_same_layers(list(proto.layer), layers)


@pytest.mark.parametrize("name", sorted(GENERATE.ZOO))
def test_checked_in_prototxt_is_up_to_date(name):
    assert (ZOO_DIR / name).read_text() == GENERATE.generate(name), \
        "%s drifted from its source: run python zoo_defs/generate.py" % name


@needs_corpus
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_checked_in_prototxt_equals_published(name):
    path = ZOO_DIR / name
    proto, _ = parse_net_text(read_text_file(path), str(path))
    _, layers = published_layers(PUBLISHED[name])
    assert_same_layers(list(proto.layer), layers)


def test_resnet_conv1_bias():
    # ResNet-50's conv1 has a bias (bias_term unset: Caffe's default, true); ResNet-101's
    # and -152's are written with bias_term: false. The zoo keeps the difference.
    conv1 = {n: next(l for l in built(n).layer if l.name == "conv1").convolution_param
             for n in ("ResNet-50-deploy.prototxt", "ResNet-101-deploy.prototxt", "ResNet-152-deploy.prototxt")}
    assert not conv1["ResNet-50-deploy.prototxt"].HasField("bias_term")
    assert conv1["ResNet-50-deploy.prototxt"].bias_term is True
    for n in ("ResNet-101-deploy.prototxt", "ResNet-152-deploy.prototxt"):
        assert conv1[n].HasField("bias_term") and conv1[n].bias_term is False


# Learnable parameters (BatchNorm statistics not counted) and conv/fc MACs per image.
@pytest.mark.parametrize("name,params,macs", [("ResNet-50-deploy.prototxt", 25557096, 3857973248),
                                              ("ResNet-152-deploy.prototxt", 60192808, 11282415616)])
def test_generated_prototxt_compiles(name, params, macs):
    # What the user runs first: netdef compile zoo_defs/ResNet-152-deploy.prototxt.
    from compiler.backends.summary import summarize
    net = netdef.parse(ZOO_DIR / name)
    assert net.shape("prob") == (1, 1000)
    assert net.shape("pool1") == (1, 64, 56, 56)    # ceil pooling: 112 -> 56
    _, totals = summarize(net)
    assert (totals["params"], totals["conv_fc_macs"]) == (params, macs)

"""netdef summary: parameters, MACs and shapes that match independent counts.

Every file of ../shared/caffe-corpus is either summarized with totals equal to
derived-facts.json (learnable params, conv/fc MACs per image, final output shapes), or
refused with a located message naming the layer type that makes it uncompilable. The
classic hand counts (the lecture's 5x5 conv and bottleneck, LeNet-5, AlexNet, VGG-16) are
checked exactly.
"""
import csv
import io
import json

import pytest

import netdef
from compiler.backends.summary import summarize
from netdef.cli import main
from tests.conftest import CORPUS

FACTS = json.loads((CORPUS / "derived-facts.json").read_text()) if CORPUS.is_dir() else {}
needs_corpus = pytest.mark.skipif(not FACTS, reason="../shared/caffe-corpus is absent")

# Corpus files Caffe itself cannot run as they are (TEST phase, no dataset), and the text
# the refusal must contain: the reason that makes them uncompilable (a data layer's source
# that is not there, a Python layer).
REFUSED = {
    "bvlc/bvlc_alexnet__train_val.prototxt": "does not exist",
    "bvlc/bvlc_googlenet__train_val.prototxt": "does not exist",
    "bvlc/bvlc_reference_caffenet__train_val.prototxt": "does not exist",
    "bvlc/cifar10__cifar10_quick_train_test.prototxt": "does not exist",
    "bvlc/finetune_flickr_style__train_val.prototxt": "does not exist",
    "bvlc/mnist__lenet_train_test.prototxt": "does not exist",
    "bvlc/siamese__mnist_siamese_train_test.prototxt": "does not exist",
    # TEST without a stage: its only data layers need stage test-on-train / test-on-test.
    "bvlc/mnist__mnist_autoencoder.prototxt": "unknown bottom blob 'data'",
    "faster_rcnn/VGG16_faster_rcnn_end2end__test.prototxt": "Python layers are not supported",
    "faster_rcnn/ZF_faster_rcnn_end2end__test.prototxt": "Python layers are not supported",
    "fcn/voc-fcn32s__train.prototxt": "Python layers are not supported",
    "fcn/voc-fcn32s__val.prototxt": "Python layers are not supported",
    "fcn/voc-fcn8s-atonce__val.prototxt": "Python layers are not supported",
    "nin/nin_imagenet__deploy.prototxt": "mixes V2 `layer {}` and V1 `layers {}`",
    "nin/nin_imagenet__train_val.prototxt": "does not exist",
}

# Learnable blobs of layer types derived-facts.json does not count (it counts conv, fc,
# deconv, Scale, Bias and PReLU blobs): SSD300's Normalize layer conv4_3_norm learns one
# scale per channel of conv4_3, a blob Caffe creates and the SSD caffemodels store.
UNCOUNTED_BY_FACTS = {"ssd/VGG_VOC0712_SSD_300x300__deploy.prototxt": 512}
# Sizes derived-facts.json names because the data decides them, and the size Caffe
# declares for them before a forward pass: DetectionOutput's number of detections.
DECLARED = {"N_det": 1}


@needs_corpus
@pytest.mark.parametrize("name", sorted(FACTS))
def test_corpus_file_matches_derived_facts_or_is_refused_with_a_location(name):
    facts = FACTS[name]
    if name in REFUSED:
        with pytest.raises(netdef.NetdefError) as e:
            netdef.parse(CORPUS / name)
        errors = getattr(e.value, "errors", [e.value])
        hits = [x for x in errors if REFUSED[name] in x.message]
        assert hits, "expected a refusal mentioning %s, got:\n%s" % (REFUSED[name], e.value)
        assert all(x.line and x.layer for x in hits), str(e.value)
        return
    net = netdef.parse(CORPUS / name)
    rows, totals = summarize(net)
    assert totals["params"] == facts["learnable_params"] + UNCOUNTED_BY_FACTS.get(name, 0)
    assert totals["conv_fc_macs"] == facts["conv_fc_macs"]
    assert totals["outputs"] == {blob: [DECLARED.get(d, d) for d in shape]
                                 for blob, shape in facts["final_outputs"].items()}


@needs_corpus
def test_every_refused_file_is_in_the_corpus():
    # A renamed corpus file must not silently drop out of the refusal checks.
    assert set(REFUSED) <= set(FACTS)


@needs_corpus
@pytest.mark.parametrize("name, shapes", [
    ("bvlc/bvlc_alexnet__train_val.prototxt", ["data=10,3,227,227", "label=10"]),
    ("bvlc/mnist__lenet_train_test.prototxt", ["data=64,1,28,28", "label=64"]),
])
def test_train_val_with_input_shapes_counts_like_its_deploy(name, shapes, capsys):
    """A Data layer's shape comes from --input-shape; the learnable blobs are the deploy's."""
    deploy = {"bvlc/bvlc_alexnet__train_val.prototxt": "bvlc/bvlc_alexnet__deploy.prototxt",
              "bvlc/mnist__lenet_train_test.prototxt": "bvlc/mnist__lenet.prototxt"}[name]
    argv = ["summary", str(CORPUS / name), "--format", "json"]
    for s in shapes:
        argv += ["--input-shape", s]
    assert main(argv) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["params"] == FACTS[deploy]["learnable_params"]
    assert totals["conv_fc_macs"] == FACTS[deploy]["conv_fc_macs"]


@needs_corpus
@pytest.mark.parametrize("name, params", [
    ("bvlc/bvlc_alexnet__deploy.prototxt", 60_965_224),
    ("vgg/VGG_ILSVRC_16_layers_deploy.prototxt", 138_357_544),
])
def test_classic_parameter_counts(name, params):
    _, totals = summarize(netdef.parse(CORPUS / name))
    assert totals["params"] == params


def _conv(name, bottom, n, k, pad=0, stride=1):
    return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s" convolution_param '
            '{ num_output: %d kernel_size: %d pad: %d stride: %d } }\n' % (name, bottom, name, n, k, pad, stride))


def _input(c, h, w):
    return 'name: "t"\ninput: "data"\ninput_shape { dim: 1 dim: %d dim: %d dim: %d }\n' % (c, h, w)


def _summary(tmp_path, text):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return summarize(netdef.parse(path))


def test_lecture_5x5_conv_on_28x28x192(tmp_path):
    rows, totals = _summary(tmp_path, _input(192, 28, 28) + _conv("conv", "data", 32, 5, pad=2))
    assert rows[-1]["output"] == [[1, 32, 28, 28]]
    assert totals["macs"] == 120_422_400 == 28 * 28 * 32 * 5 * 5 * 192


def test_lecture_1x1_bottleneck_cuts_the_cost_tenfold(tmp_path):
    text = _input(192, 28, 28) + _conv("reduce", "data", 16, 1) + _conv("conv", "reduce", 32, 5, pad=2)
    rows, totals = _summary(tmp_path, text)
    assert [r["macs"] for r in rows[1:]] == [2_408_448, 10_035_200]
    assert totals["macs"] == 12_443_648


LENET5 = _input(1, 32, 32) + _conv("c1", "data", 6, 5) + '''
layer { name: "s2" type: "Pooling" bottom: "c1" top: "s2" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
''' + _conv("c3", "s2", 16, 5) + '''
layer { name: "s4" type: "Pooling" bottom: "c3" top: "s4" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
''' + _conv("c5", "s4", 120, 5) + '''
layer { name: "f6" type: "InnerProduct" bottom: "c5" top: "f6" inner_product_param { num_output: 84 } }
layer { name: "out" type: "InnerProduct" bottom: "f6" top: "out" inner_product_param { num_output: 10 } }
'''


def test_lenet5_has_about_60k_parameters(tmp_path):
    rows, totals = _summary(tmp_path, LENET5)
    # LeCun et al. 1998 with a fully connected C3: 156 + 2,416 + 48,120 + 10,164 + 850.
    assert [r["params"] for r in rows if r["params"]] == [156, 2_416, 48_120, 10_164, 850]
    assert totals["params"] == 61_706
    assert totals["outputs"] == {"out": [1, 10]}


def test_shared_weights_count_once(tmp_path):
    shared = ('layer { name: "%s" type: "InnerProduct" bottom: "data" top: "%s" param { name: "w" } '
              'param { name: "b" } inner_product_param { num_output: 10 } }\n')
    rows, totals = _summary(tmp_path, _input(1, 4, 4) + shared % ("a", "a") + shared % ("b", "b"))
    assert [r["params"] for r in rows[1:]] == [170, 0]
    assert totals["params"] == 170 and totals["macs"] == 2 * 160


@pytest.fixture
def lenet5(tmp_path):
    path = tmp_path / "lenet5.prototxt"
    path.write_text(LENET5)
    return str(path)


def test_summary_formats_agree(lenet5, capsys):
    assert main(["summary", lenet5, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["layers"]] == ["input", "c1", "s2", "c3", "s4", "c5", "f6", "out"]
    assert doc["totals"]["params"] == 61_706

    assert main(["summary", lenet5, "--format", "csv"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["name", "type", "output", "params", "macs", "memory_bytes"]
    assert table[-1][0] == "TOTAL" and int(table[-1][3]) == 61_706
    assert int(table[-1][4]) == doc["totals"]["macs"] and int(table[-1][5]) == doc["totals"]["memory"]
    assert [row[2] for row in table[1:3]] == ["1x1x32x32", "1x6x28x28"]

    assert main(["summary", lenet5]) == 0
    out = capsys.readouterr().out
    assert "61,706 params" in out and "{:,} MACs".format(doc["totals"]["macs"]) in out
    assert "c3" in out and "1x16x10x10" in out


def test_summary_takes_input_shapes(lenet5, capsys):
    assert main(["summary", lenet5, "--format", "json", "--input-shape", "data=8,1,32,32"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["outputs"] == {"out": [8, 10]}
    # MACs are per image: the batch changes the memory, not the MACs.
    assert doc["layers"][1]["memory"] == 8 * 6 * 28 * 28 * 4


def test_summary_of_a_broken_net_is_a_located_error(tmp_path, capsys):
    path = tmp_path / "broken.prototxt"
    path.write_text(_input(3, 8, 8) + _conv("c", "dta", 4, 3))
    assert main(["summary", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: %s:4: layer 'c': unknown bottom blob 'dta'" % path)
    assert "did you mean 'data'?" in err

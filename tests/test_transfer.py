"""Fine-tuning edits (netdef finetune and netdef/training/transfer.py), the deploy net of a
train_val (netdef deploy), and the summary's trainable/frozen accounting."""
import json

import pytest

import netdef
from compiler import pipeline
from compiler.backends.summary import summarize
from compiler.state import NetState
from netdef.cli import main
from netdef.training import transfer
from tests.conftest import CORPUS, ROOT

# A train_val: data and label from a Data layer per phase, conv + BatchNorm + Scale, a
# classifier fed to a loss (both phases) and an accuracy (TEST).
TRAIN_VAL = '''name: "small"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.5 mirror: true crop_size: 6 } data_param { source: "train_db" batch_size: 4 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.5 crop_size: 6 } data_param { source: "test_db" batch_size: 2 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy"
  include { phase: TEST } }
'''
SHAPES = ["--input-shape", "data=2,3,6,6", "--input-shape", "label=2"]
SHAPE_DICT = {"data": (2, 3, 6, 6), "label": (2,)}


@pytest.fixture
def train_val(tmp_path):
    path = tmp_path / "train_val.prototxt"
    path.write_text(TRAIN_VAL)
    return path


def finetuned(path, tmp_path, *options, out="ft.prototxt", phase="TRAIN", shapes=SHAPE_DICT):
    target = tmp_path / out
    given = [a for name, dims in shapes.items() for a in ("--input-shape", "%s=%s" % (name, ",".join(map(str, dims))))]
    assert main(["finetune", str(path), "-o", str(target)] + given + list(options)) == 0
    return pipeline.build(target, NetState(phase), shapes)


def specs(net, name):
    return [(p.lr_mult, p.decay_mult) for p in net.layer(name).param.param]


def test_freeze_all_trains_only_the_new_head(train_val, tmp_path):
    net = finetuned(train_val, tmp_path, "--classes", "3")
    assert [l.name for l in net.layers if l.type == "InnerProduct"] == ["fc_ft"]
    assert net.layer("fc_ft").param.inner_product_param.num_output == 3
    assert specs(net, "fc_ft") == [(10, 1), (20, 0)]
    assert specs(net, "conv1") == [(0, 0), (0, 0)]
    assert specs(net, "conv2") == [(0, 0)]                 # no spec for a bias it does not have
    assert specs(net, "bn1") == [(0, 0)] * 3 and net.layer("bn1").param.batch_norm_param.use_global_stats
    assert specs(net, "scale1") == [(0, 0), (0, 0)]
    rows, totals = summarize(net)
    assert totals["trainable"] == 4 * 4 * 4 * 3 + 3 and totals["frozen"] == totals["params"] - totals["trainable"]
    assert {r["name"]: r["frozen"] for r in rows}["conv1"] == 4 * 3 * 3 * 3 + 4


def test_freeze_up_to_a_layer_and_none(train_val, tmp_path):
    net = finetuned(train_val, tmp_path, "--classes", "3", "--freeze", "scale1", "--head", "fc_new")
    assert specs(net, "scale1") == [(0, 0), (0, 0)] and specs(net, "conv2") == []
    assert specs(net, "fc_new") == [(10, 1), (20, 0)]
    net = finetuned(train_val, tmp_path, "--classes", "3", "--freeze", "none", out="none.prototxt")
    assert specs(net, "conv1") == [] and not net.layer("bn1").param.batch_norm_param.HasField("use_global_stats")


def test_the_accuracy_and_loss_of_both_phases_follow_the_head(train_val, tmp_path):
    net = finetuned(train_val, tmp_path, "--classes", "3", phase="TEST")
    assert net.shape("fc") == (2, 3)         # the top keeps its name: loss and accuracy still read it
    assert {l.name for l in net.layers} >= {"fc_ft", "loss", "accuracy"}


def test_the_same_edits_as_python_functions(train_val):
    net = pipeline.read(train_val)
    renames, frozen = transfer.finetune(net, 5, head="cls", freeze_upto="conv1", input_shapes=SHAPE_DICT)
    assert renames == {"fc": "cls"} and frozen == ["conv1"]
    assert [l.name for l in net.layers].count("data") == 2       # both phases kept
    test = transfer.phase_net(net, NetState("TEST"), SHAPE_DICT)
    assert [l.name for l in transfer.classifiers(test)] == ["cls"]


def test_a_netdef_language_output_and_the_labels_beside_it(train_val, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nneither\n")
    net = finetuned(train_val, tmp_path, "--labels", str(labels), out="ft.net")
    assert net.layer("fc_ft").param.inner_product_param.num_output == 3
    assert (tmp_path / "ft.labels.txt").read_text() == "cat\ndog\nneither\n"


def test_weights_are_matched_as_training_will_load_them(tmp_path, capsys):
    lenet = ROOT / "zoo_defs" / "LeNet-5.prototxt"
    weights = tmp_path / "lenet.caffemodel"
    assert main(["compile", str(lenet), "--export-caffemodel", str(weights)]) == 0
    capsys.readouterr()
    assert main(["finetune", str(lenet), "--weights", str(weights), "--classes", "2", "--freeze", "fc1",
                 "-o", str(tmp_path / "ft.prototxt")]) == 0
    out = capsys.readouterr().out
    assert "ignoring fc3: not in the net" in out and "fc3_ft: it keeps its filler values" in out
    with pytest.warns(netdef.NetdefWarning, match="fc3"):
        gm = netdef.load(str(tmp_path / "ft.prototxt"), weights=str(weights))
    reference = netdef.load(str(lenet), weights=str(weights))
    assert (gm.fc1.weight == reference.fc1.weight).all()


@pytest.mark.skipif(not (CORPUS / "bvlc").is_dir(), reason="../shared/caffe-corpus is absent")
def test_googlenet_gets_three_new_heads(tmp_path):
    net = finetuned(CORPUS / "bvlc" / "bvlc_googlenet__train_val.prototxt", tmp_path, "--classes", "7",
                    shapes={"data": (1, 3, 224, 224), "label": (1,)})
    heads = [l.name for l in net.layers if l.name.endswith("_ft")]
    assert heads == ["loss1/classifier_ft", "loss2/classifier_ft", "loss3/classifier_ft"]
    assert all(net.shape(net.blobs[net.layer(h).tops[0]].name)[1] == 7 for h in heads)


@pytest.mark.parametrize("options, message", [
    (["--classes", "3", "--head", "conv1"], "taken by this layer"),
    (["--classes", "3", "--freeze", "nowhere"], "no layer of that name"),
    (["--classes", "0"], "at least 1 class"),
    ([], "how many classes"),
])
def test_finetune_refuses_bad_input_and_writes_nothing(options, message, train_val, tmp_path, capsys):
    code = main(["finetune", str(train_val), "-o", str(tmp_path / "out.prototxt")] + SHAPES + options)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and 1 <= len(err) <= 2 and message in err[0] and str(train_val) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_val.prototxt"]


def test_deploy_is_the_net_caffe_users_write(train_val, tmp_path):
    out = tmp_path / "deploy.prototxt"
    assert main(["deploy", str(train_val), "-o", str(out), "--batch", "1"] + SHAPES) == 0
    net = netdef.parse(str(out))
    assert [l.type for l in net.layers] == ["Input", "Convolution", "BatchNorm", "Scale", "ReLU", "Convolution",
                                            "InnerProduct", "Softmax"]
    assert net.outputs == ["prob"] and net.shape("prob") == (1, 10) and net.shape("data") == (1, 3, 6, 6)
    transform = net.layer("data").param.transform_param        # the TEST data's preprocessing
    assert transform.scale == 0.5 and transform.crop_size == 6 and not transform.mirror
    assert not any(l.param.include for l in net.layers)


@pytest.mark.skipif(not (CORPUS / "bvlc").is_dir(), reason="../shared/caffe-corpus is absent")
def test_googlenet_deploy_matches_the_zoo_deploy(tmp_path, capsys):
    out = tmp_path / "deploy.prototxt"
    assert main(["deploy", str(CORPUS / "bvlc" / "bvlc_googlenet__train_val.prototxt"), "-o", str(out),
                 "--input-shape", "data=10,3,224,224", "--input-shape", "label=10"]) == 0
    capsys.readouterr()
    mine = summarize(netdef.parse(str(out)))[1]
    zoo = summarize(netdef.parse(str(CORPUS / "bvlc" / "bvlc_googlenet__deploy.prototxt")))[1]
    for key in ("params", "macs", "outputs", "layers"):
        assert mine[key] == zoo[key], key


def test_deploy_of_a_deploy_net_is_refused(tmp_path, capsys):
    out = tmp_path / "d.prototxt"
    assert main(["deploy", str(ROOT / "zoo_defs" / "LeNet-5.prototxt"), "-o", str(out)]) == 1
    assert "deploy net already" in capsys.readouterr().err and not out.exists()


def test_summary_json_and_table_show_frozen_parameters(train_val, tmp_path, capsys):
    finetuned(train_val, tmp_path, "--classes", "3")
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "ft.prototxt"), "--format", "json"] + SHAPES) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["trainable"] == 4 * 4 * 4 * 3 + 3
    assert main(["summary", str(tmp_path / "ft.prototxt")] + SHAPES) == 0
    table = capsys.readouterr().out
    assert "trainable" in table.splitlines()[0] and "frozen" in table.splitlines()[3]
    assert "(%s trainable, " % "{:,}".format(4 * 4 * 4 * 3 + 3) in table


# The three regimes, trained by netdef train from the pretrained start.
PRETRAINED = '''name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc"
  inner_product_param { num_output: 10 weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
'''


@pytest.mark.parametrize("regime, frozen, trained", [
    ("all", ["conv1", "bn1", "conv2"], ["fc_ft"]),
    ("conv1", ["conv1"], ["conv2", "fc_ft"]),
    ("none", [], ["conv1", "conv2", "fc_ft"]),
])
def test_netdef_train_keeps_frozen_layers_and_trains_the_rest(regime, frozen, trained, tmp_path, monkeypatch):
    import numpy as np
    from compiler.frontends.caffemodel import read_caffemodel
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained.prototxt").write_text(PRETRAINED)
    gm = netdef.load("pretrained.prototxt", phase="TRAIN")
    netdef.export(gm, "pretrained.caffemodel")
    assert main(["finetune", "pretrained.prototxt", "--classes", "3", "--freeze", regime, "-o", "net.prototxt"]) == 0
    (tmp_path / "solver.prototxt").write_text('net: "net.prototxt"\nbase_lr: 0.1\nmomentum: 0.9\n'
                                              'lr_policy: "fixed"\nmax_iter: 2\nsnapshot: 2\n'
                                              'snapshot_prefix: "ft"\nrandom_seed: 1\n')
    rng = np.random.default_rng(0)
    np.savez("feed.npz", data=rng.standard_normal((2, 4, 3, 6, 6)).astype(np.float32),
             label=rng.integers(0, 3, (2, 4)).astype(np.float32))
    assert main(["train", "solver.prototxt", "--weights", "pretrained.caffemodel", "--feed", "feed.npz"]) == 0
    before = {l.name: l.blobs for l in read_caffemodel("pretrained.caffemodel")}
    after = {l.name: l.blobs for l in read_caffemodel("ft_iter_2.caffemodel")}
    for name in frozen:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name])), name
    for name in trained:
        assert name not in before or not np.array_equal(before[name][0], after[name][0]), name

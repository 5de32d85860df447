"""netdef predict: Caffe's TEST preprocessing (the net's transform_param, else the
command line's), ten crops, ensembles, class names, and bad input refused."""
import argparse
import re

import numpy as np
import pytest
import torch

import netdef
from compiler.proto import caffe_pb2
from netdef.cli import main
from netdef.commands.predict import preprocessor
from netdef.inference.predict import ensemble, ten_crops

cv2 = pytest.importorskip("cv2", reason="decoding images as Caffe does needs OpenCV (the data extra)")
pytest.importorskip("netdef.data", reason="predict decodes and transforms with netdef/data (the data branch)")

DEPLOY = '''name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 24 dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
  inner_product_param { num_output: NUM weight_filler { type: "gaussian" std: 1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
'''


@pytest.fixture
def files(tmp_path):
    """A deploy net with random weights (two snapshots), and three images of 32x40."""
    net = tmp_path / "deploy.prototxt"
    net.write_text(DEPLOY.replace("NUM", "5"))
    for k in (1, 2):
        torch.manual_seed(k)
        netdef.export(netdef.load(str(net)), str(tmp_path / ("w%d.caffemodel" % k)))
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / ("img%d.png" % i)), rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    return tmp_path


def predicted(argv, capsys):
    code = main([str(a) for a in ["predict"] + argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    return {lines[i]: [l.split(None, 1) for l in lines[i + 1:i + 4]] for i in range(0, len(lines), 4)}


def reference(files, image, weights, crops):
    """What predict must print, computed here: Caffe's TEST transform by hand (BGR pixels
    minus the mean, times the scale), the crops cut by hand, the softmax averaged."""
    img = cv2.imread(str(files / image)).transpose(2, 0, 1).astype(np.float32)
    img = (img - np.float32([100, 110, 120]).reshape(3, 1, 1)) * np.float32(0.01)
    offsets = [((32 - 24) // 2, (40 - 24) // 2)] if crops == 1 else \
        [(0, 0), (0, 16), (8, 0), (8, 16), (4, 8)]
    batch = [img[:, y:y + 24, x:x + 24] for y, x in offsets]
    if crops == 10:
        batch += [c[:, :, ::-1] for c in batch]
    gm = netdef.load(str(files / "deploy.prototxt"), weights=str(files / weights),
                     input_shapes={"data": (len(batch), 3, 24, 24)})
    with torch.no_grad():
        return gm(torch.from_numpy(np.ascontiguousarray(np.stack(batch))))["prob"].mean(0)


PREPROCESS = ["--mean", "100,110,120", "--scale", "0.01", "--crop", "24", "--top", "3"]


@pytest.mark.parametrize("crops", [1, 10])
def test_predict_is_caffe_test_preprocessing_and_averaged_crops(crops, files, capsys):
    result = predicted([files / "deploy.prototxt", "--weights", files / "w1.caffemodel", files / "img0.png",
                        files / "img1.png", "--crops", crops] + PREPROCESS, capsys)
    for image in ("img0.png", "img1.png"):
        expected = reference(files, image, "w1.caffemodel", crops)
        top = torch.topk(expected, 3)
        rows = result[str(files / image)]
        assert [r[1] for r in rows] == ["class %d" % i for i in top.indices.tolist()]
        np.testing.assert_allclose([float(r[0]) for r in rows], top.values.numpy(), atol=1e-4)


def test_an_ensemble_averages_outputs_not_weights(files, capsys):
    labels = files / "deploy.labels.txt"
    labels.write_text("a\nb\nc\nd\ne\n")          # found beside the net
    result = predicted([files / "deploy.prototxt", "--weights", files / "w1.caffemodel", files / "img2.png",
                        "--ensemble", files / "w2.caffemodel"] + PREPROCESS, capsys)
    expected = (reference(files, "img2.png", "w1.caffemodel", 1) + reference(files, "img2.png", "w2.caffemodel", 1)) / 2
    top = torch.topk(expected, 3)
    rows = result[str(files / "img2.png")]
    assert [r[1] for r in rows] == ["abcde"[i] for i in top.indices.tolist()]
    np.testing.assert_allclose([float(r[0]) for r in rows], top.values.numpy(), atol=1e-4)


def test_ten_crops_are_corners_centre_and_mirrors():
    image = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    crops = ten_crops(image, 3)
    assert crops.shape == (10, 2, 3, 3)
    np.testing.assert_array_equal(crops[0], image[:, :3, :3])
    np.testing.assert_array_equal(crops[3], image[:, 2:, 3:])
    np.testing.assert_array_equal(crops[4], image[:, 1:4, 1:4])     # Caffe's TEST crop: (5-3)//2, (6-3)//2
    np.testing.assert_array_equal(crops[9], image[:, 1:4, 1:4][:, :, ::-1])


def test_the_centre_crop_is_the_data_transformers_test_output(files):
    from netdef.data.transformer import DataTransformer
    from netdef.inference.predict import Preprocessor
    param = caffe_pb2.TransformationParameter(crop_size=24, scale=0.5, mirror=True)
    param.mean_value.extend([1, 2, 3])
    ours = Preprocessor(param).crops(files / "img0.png", 1)[0]
    caffe = DataTransformer(param, "TEST")(cv2.imread(str(files / "img0.png")).transpose(2, 0, 1))
    np.testing.assert_array_equal(ours, caffe)


def test_an_ensemble_member_of_other_classes_is_named():
    def member(n, name):
        return (lambda x: {"p": torch.ones(x.shape[0], n)}, "p", True, name)
    with pytest.raises(netdef.NetdefError, match="other.caffemodel.*shape"):
        ensemble([member(5, "main.caffemodel"), member(4, "other.caffemodel")], torch.zeros(2, 3))


def test_bad_input_is_one_located_error(files, capsys):
    (files / "bad.png").write_bytes(b"not an image")
    other = files / "other.prototxt"
    other.write_text(DEPLOY.replace("NUM", "4"))
    netdef.export(netdef.load(str(other)), str(files / "other.caffemodel"))
    for argv, where in [
        ([files / "bad.png"], "bad.png"),
        ([files / "img0.png", "--ensemble", "%s:%s" % (other, files / "other.caffemodel")], "other.caffemodel"),
        ([files / "img0.png", "--labels", files / "missing.txt"], "missing.txt"),
    ]:
        code = main([str(a) for a in ["predict", files / "deploy.prototxt", "--weights", files / "w1.caffemodel"]
                     + PREPROCESS + argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and 1 <= len(err) <= 2 and where in err[0], err


def test_features_of_listed_images_are_the_blob_with_the_labels(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "list.txt").write_text("img0.png 3\nimg1.png 1\nimg2.png 4\n")
    code = main(["features", "deploy.prototxt", "--weights", "w1.caffemodel", "--blob", "pool", "--images",
                 "list.txt", "--batch", "2", "-o", "cache"] + PREPROCESS[:-2])
    assert code == 0, capsys.readouterr().err
    # Named as given, relative to the working directory: an HDF5Data source's paths are.
    assert (files / "cache" / "list.txt").read_text().split() == ["cache/shard_00000"]
    data = np.load(files / "cache" / "shard_00000" / "data.npy", mmap_mode="r", allow_pickle=False)
    labels = np.load(files / "cache" / "shard_00000" / "label.npy", allow_pickle=False)
    assert data.shape == (3, 4, 1, 1) and labels.tolist() == [3, 1, 4]
    gm = netdef.load(str(files / "deploy.prototxt"), weights=str(files / "w1.caffemodel"), outputs=["pool"],
                     input_shapes={"data": (1, 3, 24, 24)})
    prep = preprocessor(argparse.Namespace(mean="100,110,120", scale=0.01, crop=24, resize=None), netdef.parse(
        str(files / "deploy.prototxt")))
    with torch.no_grad():
        want = gm(torch.from_numpy(prep.crops("img1.png", 1)))["pool"]
    np.testing.assert_allclose(data[1], want[0].numpy(), atol=1e-6)
    # An existing folder is never written into.
    assert main(["features", "deploy.prototxt", "--weights", "w1.caffemodel", "--blob", "pool", "--images",
                 "list.txt", "-o", "cache"] + PREPROCESS[:-2]) == 1
    assert "exists" in capsys.readouterr().err


def test_features_of_a_train_val_read_back_as_an_hdf5data_source(files, capsys, monkeypatch):
    from compiler import pipeline
    from compiler.state import NetState
    from netdef.data.feed import NetData
    monkeypatch.chdir(files)
    (files / "list.txt").write_text("img0.png 3\nimg1.png 1\nimg2.png 4\n")
    (files / "tv.prototxt").write_text(DEPLOY.replace("NUM", "5").replace(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 24 dim: 24 } } }',
        'layer { name: "data" type: "ImageData" top: "data" top: "label" transform_param { crop_size: 24 '
        'mean_value: 100 mean_value: 110 mean_value: 120 scale: 0.01 } image_data_param { source: "list.txt" '
        'batch_size: 2 } }'))
    assert main(["features", "tv.prototxt", "--weights", "w1.caffemodel", "--blob", "pool", "-o", "cache"]) == 0
    capsys.readouterr()
    head = files / "head.prototxt"
    head.write_text('layer { name: "cached" type: "HDF5Data" top: "data" top: "label" '
                    'hdf5_data_param { source: "cache/list.txt" batch_size: 3 } }\n'
                    'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                    'inner_product_param { num_output: 5 } }\n')
    batch = NetData(pipeline.build(head, NetState("TRAIN"))).batch(0)
    assert batch["label"].tolist() == [3, 1, 4]
    # The same rows as the listed images through the deploy net with the same preprocessing.
    gm = netdef.load("deploy.prototxt", weights="w1.caffemodel", outputs=["pool"], input_shapes={"data": (3, 3, 24, 24)})
    prep = preprocessor(argparse.Namespace(mean="100,110,120", scale=0.01, crop=24, resize=None),
                        netdef.parse("deploy.prototxt"))
    with torch.no_grad():
        want = gm(torch.from_numpy(np.concatenate([prep.crops("img%d.png" % i, 1) for i in range(3)])))["pool"]
    np.testing.assert_allclose(batch["data"], want.numpy(), atol=1e-6)


# The deploy net's layers (the same names: w1 and w2 load into it), scored.
SCORED = "\n".join(DEPLOY.splitlines()[2:-1]) + '''
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy" }
'''
TRAIN_VAL = '''name: "small"
layer { name: "data" type: "ImageData" top: "data" top: "label"
  transform_param { crop_size: 24 scale: 0.01 mean_value: 100 mean_value: 110 mean_value: 120 }
  image_data_param { source: "list.txt" batch_size: 3 } }
''' + SCORED
LABELS = [3, 1, 4]


@pytest.fixture
def train_val(files, monkeypatch):
    """The scored deploy net reading the three images through ImageData, centre-cropped to
    24 in TEST."""
    monkeypatch.chdir(files)
    (files / "list.txt").write_text("".join("img%d.png %d\n" % (i, c) for i, c in enumerate(LABELS)))
    (files / "train_val.prototxt").write_text(TRAIN_VAL.replace("NUM", "5"))
    return files


def scored(argv, capsys):
    code = main(["test", "train_val.prototxt", "--weights", "w1.caffemodel", "--iterations", "1"] + argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    finals = dict(re.findall(r"^(\w+) = (\S+)", out.out, re.M))
    return float(finals["loss"]), float(finals["accuracy"])


@pytest.mark.parametrize("crops, members", [(10, ["w1.caffemodel"]), (1, ["w1.caffemodel", "w2.caffemodel"]),
                                            (10, ["w1.caffemodel", "w2.caffemodel"])])
def test_test_scores_the_prediction_averaged_over_crops_and_members(crops, members, train_val, capsys):
    probs = [sum(reference(train_val, "img%d.png" % i, w, crops) for w in members) / len(members)
             for i in range(len(LABELS))]
    loss = np.mean([-np.log(float(p[c])) for p, c in zip(probs, LABELS)])
    accuracy = np.mean([int(p.argmax()) == c for p, c in zip(probs, LABELS)])
    got = scored(["--crops", str(crops)] + (["--ensemble"] + members[1:] if members[1:] else []), capsys)
    assert got == pytest.approx((loss, accuracy), rel=1e-5)


def test_one_member_on_one_crop_scores_as_caffe_test(train_val, capsys):
    # --ensemble of the same weights twice averages two equal predictions: caffe test's loss and accuracy
    assert scored(["--ensemble", "w1.caffemodel"], capsys) == pytest.approx(scored([], capsys), rel=1e-5)


def test_test_time_averaging_refuses_what_it_cannot_score(train_val, capsys):
    other = train_val / "other.prototxt"
    other.write_text(TRAIN_VAL.replace("NUM", "4"))
    torch.manual_seed(3)
    netdef.export(netdef.load(str(other)), str(train_val / "other.caffemodel"))
    (train_val / "euclid.prototxt").write_text(TRAIN_VAL.replace("NUM", "5").replace(
        'type: "SoftmaxWithLoss" bottom: "fc" bottom: "label"', 'type: "EuclideanLoss" bottom: "fc" bottom: "fc"'))
    np.savez(train_val / "in.npz", data=np.zeros((1, 3, 3, 24, 24), np.float32), label=np.zeros((1, 3), np.float32))
    (train_val / "arrays.prototxt").write_text('name: "small"\nlayer { name: "data" type: "Input" top: "data" '
                                               'top: "label" input_param { shape { dim: 3 dim: 3 dim: 24 dim: 24 } '
                                               'shape { dim: 3 } } }\n' + SCORED.replace("NUM", "5"))
    for argv, where in [
        (["train_val.prototxt", "--ensemble", "other.prototxt:other.caffemodel"], "other.caffemodel"),
        (["euclid.prototxt", "--crops", "10"], "SoftmaxWithLoss"),
        (["arrays.prototxt", "--crops", "10", "--input", "in.npz"], "--crops 10"),
    ]:
        code = main(["test", "--weights", "w1.caffemodel", "--iterations", "1"] + argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and 1 <= len(err) <= 2 and where in " ".join(err), err

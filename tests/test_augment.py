"""The lecture's augmentations (netdef_augment), each on images of known content, and the
rule that files netdef writes for Caffe leave netdef's extension out."""
import json
import zipfile

import numpy as np
import pytest

import netdef
from compiler.proto import caffe_pb2
from netdef.cli import main

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the data extra) is not installed")

from netdef.data.augment import Augmentations  # noqa: E402


def tparam(**augment):
    p = caffe_pb2.TransformationParameter(scale=0.5)
    p.netdef_augment.SetInParent()
    for k, v in augment.items():
        if isinstance(v, list):
            getattr(p.netdef_augment, k).extend(v)
        else:
            setattr(p.netdef_augment, k, v)
    return p


def test_colour_shift_moves_each_channel_mean_by_the_drawn_offset():
    aug = Augmentations(tparam(color_shift=[20, 30, 40]), "TRAIN")
    flat = np.full((3, 5, 4), 7, np.float32)
    out = aug.colour(flat, np.random.default_rng(9))
    drawn = np.random.default_rng(9).uniform(-1, 1, 3) * np.array([20, 30, 40])
    moved = (out - flat).reshape(3, -1)
    assert np.allclose(moved, moved[:, :1]) and np.allclose(moved[:, 0], drawn * 0.5, atol=1e-5)
    assert (np.abs(moved[:, 0]) <= np.array([20, 30, 40]) * 0.5).all()
    assert np.array_equal(Augmentations(tparam(color_shift=[20]), "TEST").colour(flat, None), flat)


def colour_line_images(folder, direction, count=6):
    """Images whose every pixel is t * direction (t varies): their colours lie on one line."""
    folder.mkdir()
    lines = []
    rng = np.random.default_rng(0)
    for i in range(count):
        t = rng.integers(0, 80, (6, 6, 1))
        cv2.imwrite(str(folder / ("%d.png" % i)), (t * np.asarray(direction)).astype(np.uint8))
        lines.append("%d.png 0" % i)
    return "\n".join(lines) + "\n"


def test_pca_colour_moves_pixels_along_the_computed_eigenvector(tmp_path):
    direction = np.array([1.0, 2.0, 2.0])
    (tmp_path / "list.txt").write_text(colour_line_images(tmp_path / "img", direction))
    assert main(["data", "pca-color", str(tmp_path / "list.txt"), "--root", str(tmp_path / "img") + "/",
                 "-o", str(tmp_path / "pca.json")]) == 0
    doc = json.loads((tmp_path / "pca.json").read_text())
    first = np.array(doc["eigenvectors"][0])
    assert abs(abs(first @ direction) / np.linalg.norm(direction) - 1) < 1e-6
    assert doc["eigenvalues"][1] < 1e-9 * doc["eigenvalues"][0] + 1e-12
    aug = Augmentations(tparam(pca_file=str(tmp_path / "pca.json"), pca_sigma=0.5), "TRAIN")
    flat = np.zeros((3, 4, 4), np.float32)
    moves = [(aug.colour(flat, np.random.default_rng(s)) - flat)[:, 0, 0] for s in range(5)]
    for m in moves:
        assert np.linalg.norm(np.cross(m, direction)) < 1e-3 * np.linalg.norm(m) * np.linalg.norm(direction)
    assert len({round(float(m @ direction), 3) for m in moves}) == 5          # alpha drawn per image


def test_random_scale_aspect_crop_takes_a_window_of_the_drawn_area_and_resizes_it():
    p = tparam(scale_min=0.25, scale_max=0.25)
    p.crop_size = 16
    aug = Augmentations(p, "TRAIN")
    gradient = np.tile((np.arange(64) * 3 % 256).astype(np.uint8), (3, 64, 1))   # value = 3x
    starts = set()
    for seed in range(6):
        out = aug.crop_image(gradient, np.random.default_rng(seed))
        assert out.shape == (3, 16, 16)
        row = out[0, 0].astype(int)
        assert (np.diff(row) >= 0).all() and abs((row[-1] - row[0]) - 3 * 31 * 15 / 16) <= 6
        starts.add(int(row[0]))
    assert len(starts) > 1                                     # the window's position is random
    assert Augmentations(p, "TEST").crop_image(gradient, None) is gradient


def test_bad_settings_are_refused():
    with pytest.raises(netdef.NetdefError, match="crop_size"):
        Augmentations(tparam(scale_min=0.5), "TRAIN")
    with pytest.raises(netdef.NetdefError, match="scale_min"):
        Augmentations(tparam(scale_min=0), "TRAIN")


NET = '''name: "aug"
layer { name: "data" type: "ImageData" top: "data" top: "label"
  transform_param { crop_size: 4 netdef_augment { color_shift: 10 } }
  image_data_param { source: "list.txt" batch_size: 2 } }
'''


def image_list(tmp_path):
    colour_line_images(tmp_path / "img", [1, 1, 1])
    (tmp_path / "list.txt").write_text("".join("img/%d.png 0\n" % i for i in range(6)))


def test_files_written_for_caffe_leave_the_extension_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image_list(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    assert main(["compile", "net.prototxt", "--export-prototxt", "caffe.prototxt", "-o", "saved.netdef"]) == 0
    text = (tmp_path / "caffe.prototxt").read_text()
    assert "crop_size: 4" in text and "netdef_augment" not in text
    with zipfile.ZipFile(tmp_path / "saved.netdef") as z:       # netdef's own file keeps it
        assert "color_shift: 10" in z.read("net.prototxt").decode()


def test_the_netdef_language_configures_augmentations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image_list(tmp_path)
    (tmp_path / "a.net").write_text(
        'net aug {\n    data, label = ImageData(source="list.txt", batch_size=2, transform_param='
        '{crop_size=4, netdef_augment={color_shift=[10, 20, 30], scale_min=0.5}})\n}\n')
    net = netdef.parse("a.net", "TRAIN")
    a = net.layers[0].param.transform_param.netdef_augment
    assert list(a.color_shift) == [10, 20, 30] and a.scale_min == 0.5
    assert main(["convert", "a.net", "-o", "a.prototxt"]) == 0
    assert "netdef_augment" not in (tmp_path / "a.prototxt").read_text()

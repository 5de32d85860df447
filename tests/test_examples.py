"""The worked examples' own pieces (the examples themselves run in `make acceptance`)."""
import importlib.util
import os
import sys

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the photos ship in scikit-image's wheel (the examples extra)")
pytest.importorskip("cv2", reason="the example crops with OpenCV (the data extra)")
pytest.importorskip("matplotlib", reason="the example draws its grid with matplotlib (the examples extra)")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(scope="module")
def photos():
    spec = importlib.util.spec_from_file_location("cat_coffee_neither", os.path.join(EXAMPLES, "cat_coffee_neither.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(EXAMPLES)


def test_every_photo_is_read_from_the_installed_wheel(photos):
    for name in [n for names in photos.CLASSES.values() for n in names] + photos.PRETRAIN_PHOTOS:
        image = photos.photo(name)
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 100, name


def test_the_small_set_is_augmented_crops_of_each_class(photos):
    x, y, shown = photos.data_set(list(photos.CLASSES.values()), 7, np.random.default_rng(0))
    assert x.shape == (21, 3, photos.SIZE, photos.SIZE) and x.dtype == np.float32
    assert shown.shape == (21, photos.SIZE, photos.SIZE, 3) and shown.dtype == np.uint8
    assert np.bincount(y).tolist() == [7, 7, 7] and -0.5 <= x.min() < x.max() <= 0.5
    again, _, _ = photos.data_set(list(photos.CLASSES.values()), 7, np.random.default_rng(1))
    assert not np.allclose(x, again)           # train and test sets are drawn apart


def test_the_grid_is_a_png_of_labelled_crops(photos, tmp_path):
    _, y, shown = photos.data_set(list(photos.CLASSES.values()), 3, np.random.default_rng(0))
    path = tmp_path / "grid.png"
    photos.draw_grid(path, shown, y, (y + 1) % 3, list(photos.CLASSES), columns=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

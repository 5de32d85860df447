"""The lecture's augmentations beyond Caffe's crop and mirror, TRAIN phase only.

Configured per data layer by netdef's extension of transform_param (`netdef_augment { }`
in a prototxt, `transform_param={netdef_augment={...}}` in the netdef language); every file
netdef writes for Caffe leaves it out. Each draw comes from the item's own generator (see
netdef/data/sources.py), so runs are reproducible and resumable.

- Random scale/aspect crop (Inception's "random resized crop"): a window of area fraction
  s ~ U[scale_min, scale_max] and aspect ratio r (width/height) with log r ~
  U[log aspect_min, log aspect_max] at a uniform position, resized (cv::resize, bilinear)
  to crop_size x crop_size; it takes the place of Caffe's fixed-size random crop, the mean
  is then mean_value (a mean_file has the uncropped size). After 10 draws that do not fit,
  the largest centred square is taken.
- Colour shift: per channel an offset o_c ~ U[-s_c, s_c] pixel levels, added to every
  pixel: the output channel moves by o_c * scale.
- PCA colour (AlexNet, Krizhevsky et al. 2012, section 4.1): with p_i, lambda_i the
  eigenvectors and eigenvalues of the 3x3 covariance of the training set's pixel values
  (scaled to [0, 1], in the image's B, G, R order; `netdef data pca-color` computes them
  once and stores them), every pixel of one image gets 255 * sum_i p_i alpha_i lambda_i
  levels added, alpha_i ~ N(0, pca_sigma) drawn once per image: the image's colours move
  along the principal components, most along the first.

Colour offsets are added to the transformed output (times `scale`), which equals adding
them to the pixels before the mean is subtracted.
"""
import json
import math

import numpy as np

from compiler.errors import NetdefError


class Augmentations:
    def __init__(self, tparam, phase, layer=None):
        self.layer = layer
        a = tparam.netdef_augment
        self.active = phase == "TRAIN" and tparam.HasField("netdef_augment")
        self.scale = np.float32(tparam.scale)
        self.crop = tparam.crop_size
        self.resized_crop = (a.scale_min, a.scale_max, a.aspect_min, a.aspect_max) != (1, 1, 1, 1)
        self.area = (a.scale_min, a.scale_max)
        self.log_aspect = (math.log(a.aspect_min), math.log(a.aspect_max)) if a.aspect_min > 0 < a.aspect_max else None
        self.color_shift = np.asarray(a.color_shift, np.float32)
        self.pca_sigma = a.pca_sigma
        self.pca = read_pca(a.pca_file, layer) if a.pca_file else None
        if not tparam.HasField("netdef_augment"):
            return
        if not (0 < a.scale_min <= a.scale_max <= 1):
            self._refuse("scale_min %g, scale_max %g: need 0 < scale_min <= scale_max <= 1"
                         % (a.scale_min, a.scale_max))
        if self.log_aspect is None or a.aspect_min > a.aspect_max:
            self._refuse("aspect_min %g, aspect_max %g: need 0 < aspect_min <= aspect_max"
                         % (a.aspect_min, a.aspect_max))
        if self.resized_crop and not self.crop:
            self._refuse("a random scale/aspect crop needs crop_size (the size it resizes to)")
        if self.resized_crop and tparam.HasField("mean_file"):
            self._refuse("a random scale/aspect crop cannot use mean_file (its size is the uncropped "
                         "image's): use mean_value")

    def _refuse(self, message):
        raise NetdefError(None, None, self.layer, "netdef_augment: " + message)

    def crop_image(self, img, rng):
        """CxHxW uint8 -> the random scale/aspect window resized to crop x crop (TRAIN with
        a scale/aspect range), else img unchanged."""
        if not (self.active and self.resized_crop):
            return img
        from netdef.data.codec import cv2
        _, height, width = img.shape
        for _ in range(10):
            area = height * width * rng.uniform(*self.area)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
                break
        else:
            h = w = min(height, width)
            y, x = (height - h) // 2, (width - w) // 2
        window = np.ascontiguousarray(img[:, y:y + h, x:x + w].transpose(1, 2, 0))
        out = cv2().resize(window, (self.crop, self.crop))
        return (out[:, :, None] if out.ndim == 2 else out).transpose(2, 0, 1)

    def colour(self, out, rng):
        """Add the colour shift and PCA offsets (pixel levels, times scale) to a transformed
        CxHxW float32 image."""
        if not self.active:
            return out
        channels = out.shape[0]
        levels = np.zeros(channels, np.float32)
        if len(self.color_shift):
            if len(self.color_shift) not in (1, channels):
                self._refuse("%d color_shift values for %d channels" % (len(self.color_shift), channels))
            levels += rng.uniform(-1, 1, channels).astype(np.float32) * self.color_shift
        if self.pca is not None:
            values, vectors = self.pca
            if len(values) != channels:
                self._refuse("the PCA file is for %d channels, the image has %d" % (len(values), channels))
            alpha = rng.normal(0, self.pca_sigma, channels)
            levels += (255 * vectors.T @ (alpha * values)).astype(np.float32)
        return out + (levels * self.scale)[:, None, None]


def read_pca(path, layer=None):
    """A PCA colour file (JSON by `netdef data pca-color`) -> (eigenvalues, eigenvectors as rows)."""
    try:
        with open(path) as f:
            doc = json.load(f)
        values = np.asarray(doc["eigenvalues"], np.float64)
        vectors = np.asarray(doc["eigenvectors"], np.float64)
    except FileNotFoundError:
        raise NetdefError(path, None, layer, "PCA file '%s' does not exist" % path,
                          "write it with `netdef data pca-color`") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NetdefError(path, None, layer, "not a PCA colour file: %s" % e,
                          "write it with `netdef data pca-color`") from None
    if vectors.shape != (len(values), len(values)):
        raise NetdefError(path, None, layer, "eigenvectors of shape %s for %d eigenvalues"
                          % (list(vectors.shape), len(values)))
    return values, vectors


def pca_of(images):
    """Eigen-decomposition of the pixel covariance of `images` (an iterable of CxHxW arrays
    of 0..255 values), on the [0, 1] scale: (eigenvalues descending, eigenvectors as rows)."""
    total, outer, count = None, None, 0
    for img in images:
        x = img.reshape(img.shape[0], -1).astype(np.float64) / 255.0
        if total is None:
            total, outer = np.zeros(x.shape[0]), np.zeros((x.shape[0], x.shape[0]))
        total += x.sum(axis=1)
        outer += x @ x.T
        count += x.shape[1]
    mean = total / count
    values, vectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    order = np.argsort(values)[::-1]
    return np.maximum(values[order], 0), vectors[:, order].T

"""Caffe's DataTransformer (src/caffe/data_transformer.cpp), exactly.

For one image (CxHxW, from a raw Datum, or a decoded image or encoded Datum):

    c = crop_size or the image size
    TRAIN: h_off, w_off uniform in [0, H-c] and [0, W-c]; mirror with probability 1/2 when
           `mirror` is set.  TEST: h_off = (H-c)//2, w_off = (W-c)//2, never mirrored.
    out[ch, y, x'] = (float(img[ch, h_off+y, w_off+x]) - mean) * scale,  x' = c-1-x if mirrored
    mean = mean_file[ch, h_off+y, w_off+x] (the mean blob indexed at the uncropped source
           pixel), else mean_value[ch] (one value for all channels or one per channel, in
           the image's BGR order), else nothing subtracted.

All arithmetic is float32, as Caffe's Dtype, so the result is bit for bit Caffe's.
Caffe's own checks are kept, as located errors: the crop must fit, a mean file must have
the image's size, mean_file and mean_value exclude each other, and mean_value needs one
value or one per channel.

The random draws come from a numpy Generator the caller seeds per item, so that any batch
can be made in any worker process and a resumed run draws the same values. The lecture's
augmentations (netdef/data/augment.py) apply after this, on the transformed crop.
"""
import numpy as np

from compiler.errors import NetdefError
from netdef.data.codec import read_mean


class DataTransformer:
    def __init__(self, param, phase, layer=None):
        """param: a caffe_pb2.TransformationParameter; phase: "TRAIN" or "TEST"."""
        self.layer = layer
        self.train = phase == "TRAIN"
        self.scale = np.float32(param.scale)
        self.mirror = param.mirror
        self.crop = param.crop_size
        self.force_color, self.force_gray = param.force_color, param.force_gray
        if param.HasField("mean_file") and len(param.mean_value):
            raise NetdefError(None, None, layer, "transform_param sets both mean_file and mean_value",
                              "Caffe refuses this: keep one of them")
        if self.force_color and self.force_gray:
            raise NetdefError(None, None, layer, "transform_param sets both force_color and force_gray",
                              "Caffe refuses this: keep one of them")
        self.mean_file = param.mean_file if param.HasField("mean_file") else None
        self.mean = read_mean(self.mean_file, layer) if self.mean_file else None
        self.mean_values = np.asarray(param.mean_value, np.float32)

    def shape(self, channels, height, width):
        """The transformed shape of a CxHxW image (Caffe's InferBlobShape)."""
        self._check(channels, height, width)
        return (channels, self.crop or height, self.crop or width)

    def _check(self, channels, height, width, what="the image"):
        if self.crop and (self.crop > height or self.crop > width):
            raise NetdefError(None, None, self.layer, "crop_size %d is larger than %s (%dx%d)"
                              % (self.crop, what, height, width),
                              "use a crop_size up to the image size, or resize the images")
        if self.mean is not None and self.mean.shape != (channels, height, width):
            raise NetdefError(self.mean_file, None, self.layer, "the mean file is %s but %s is %dx%dx%d"
                              % ("x".join(map(str, self.mean.shape)), what, channels, height, width),
                              "compute the mean over images of the size the layer reads "
                              "(netdef data compute-mean)")
        if len(self.mean_values) not in (0, 1, channels):
            raise NetdefError(None, None, self.layer, "%d mean_value entries for %d channels"
                              % (len(self.mean_values), channels),
                              "give one mean_value, or one per channel (in B, G, R order)")

    def __call__(self, img, rng=None, what="the image"):
        """img: CxHxW (uint8 or float32) -> the transformed CxcXc float32 array. rng draws
        the TRAIN crop offsets and mirror."""
        channels, height, width = img.shape
        self._check(channels, height, width, what)
        crop_h, crop_w = (self.crop, self.crop) if self.crop else (height, width)
        mirrored = False
        if self.train:
            mirrored = bool(self.mirror and rng.integers(2))
            h_off = int(rng.integers(height - crop_h + 1)) if self.crop else 0
            w_off = int(rng.integers(width - crop_w + 1)) if self.crop else 0
        else:
            h_off, w_off = (height - crop_h) // 2, (width - crop_w) // 2
        window = (slice(None), slice(h_off, h_off + crop_h), slice(w_off, w_off + crop_w))
        out = img[window].astype(np.float32)
        if self.mean is not None:
            out -= self.mean[window]
        elif len(self.mean_values):
            out -= self.mean_values.reshape(-1, 1, 1) if len(self.mean_values) > 1 else self.mean_values[0]
        out *= self.scale
        return out[:, :, ::-1] if mirrored else out

"""Classifying images at test time: Caffe's preprocessing, test-time crops, ensembles.

Preprocessing is the net's own where it declares one: the transform_param of its data
layer (a train_val) or of its Input (a deploy net netdef deploy wrote), with an
ImageData layer's new_height/new_width and is_color; images are decoded and transformed
as Caffe's DataTransformer does in TEST (netdef/data: OpenCV decoding, BGR, the mean at
the uncropped pixel, then the scale). A deploy net usually declares none: --mean,
--scale, --resize and --crop then say it.

Test-time crops (`crops=10`, the lecture's and Caffe's classifier.py oversampling): the
four corners and the centre of the image, each also mirrored; the net's outputs for the
ten are averaged. `crops=1` is the centre crop, which is exactly the DataTransformer's
TEST output. An ensemble averages the outputs (probabilities), not the weights, of
several modules.
"""
import numpy as np
import torch

from compiler.errors import NetdefError
from compiler.proto import caffe_pb2


def net_transform(net):
    """(TransformationParameter, (new_height, new_width), is_color) from the first input
    layer of `net` that declares a transform_param, or None."""
    for layer in net.layers:
        if layer.defn.is_input and layer.param.HasField("transform_param"):
            p = layer.param.image_data_param
            size = (p.new_height, p.new_width) if layer.type == "ImageData" else (0, 0)
            return layer.param.transform_param, size, p.is_color if layer.type == "ImageData" else True
    return None


def given_transform(mean=None, scale=None, crop=None):
    """A TransformationParameter from the command line's --mean (one value, one per
    channel in B,G,R order, or a mean .binaryproto), --scale and --crop."""
    p = caffe_pb2.TransformationParameter()
    if mean:
        try:
            p.mean_value.extend(float(v) for v in mean.split(","))
        except ValueError:
            p.mean_file = mean
    if scale is not None:
        p.scale = scale
    if crop:
        p.crop_size = crop
    return p


class Preprocessor:
    """Image files -> the net's input batches, as Caffe's TEST phase prepares them."""

    def __init__(self, transform, resize=(0, 0), is_color=True):
        from netdef.data.transformer import DataTransformer
        self.crop = transform.crop_size
        self.resize = resize
        self.is_color = is_color
        uncropped = caffe_pb2.TransformationParameter()
        uncropped.CopyFrom(transform)
        uncropped.crop_size = 0
        uncropped.mirror = False
        # The mean and scale apply to the whole image and the crops are cut from it: the
        # mean file is indexed at the uncropped pixel, as Caffe indexes it.
        self.whole = DataTransformer(uncropped, "TEST")

    def image(self, path):
        """The decoded, resized image as CxHxW, or a NetdefError naming the file."""
        from netdef.data.codec import ImageError, read_image
        try:
            img = read_image(str(path), self.resize[0], self.resize[1], self.is_color)
        except ImageError as e:
            raise NetdefError(str(path), None, None, str(e)) from None
        return img.transpose(2, 0, 1)

    def crops(self, path, count):
        """count (1 or 10) transformed crops of one image, (count, C, c, c) float32."""
        full = self.whole(self.image(path), what="image %s" % path)
        return ten_crops(full, self.crop)[4:5] if count == 1 else ten_crops(full, self.crop)


def ten_crops(image, crop):
    """CxHxW (or any ...xHxW, a batch NxCxHxW) -> (10, ..., crop, crop): the corners
    (top-left, top-right, bottom-left, bottom-right), the centre (offset (H-c)//2,
    (W-c)//2, the DataTransformer's TEST crop), then the same five mirrored. crop 0: the
    whole image, ten times."""
    h, w = image.shape[-2:]
    c_h, c_w = (crop, crop) if crop else (h, w)
    if c_h > h or c_w > w:
        raise NetdefError(None, None, None, "crop %d is larger than the image (%dx%d)" % (crop, h, w),
                          "resize the images (--resize) or crop less")
    offsets = [(0, 0), (0, w - c_w), (h - c_h, 0), (h - c_h, w - c_w), ((h - c_h) // 2, (w - c_w) // 2)]
    five = np.stack([image[..., y:y + c_h, x:x + c_w] for y, x in offsets])
    return np.concatenate([five, five[..., ::-1]])


def probabilities(outputs, blob, softmax):
    """The output `blob` of a forward pass, as probabilities over its axis 1 (softmax
    applied when the blob is not one already)."""
    out = outputs[blob].float().flatten(1)
    return torch.softmax(out, 1) if softmax else out


def ensemble(members, batch):
    """Average the class probabilities of several modules on one batch: members,
    [(module, blob, softmax, source file)]. Their outputs must have one shape (the same
    classes); a member whose do not is an error naming its file."""
    total = None
    for module, blob, softmax, source in members:
        with torch.no_grad():
            probs = probabilities(module(batch), blob, softmax)
        if total is not None and probs.shape != total.shape:
            raise NetdefError(str(source), None, None, "this ensemble member's %s has shape %s, the first "
                              "member's %s" % (blob, list(probs.shape), list(total.shape)),
                              "an ensemble averages nets that classify into the same classes")
        total = probs if total is None else total + probs
    return total / len(members)


def top_k(probs, k):
    """[(class index, probability)] of the k most probable classes, most probable first."""
    values, indices = torch.topk(probs, min(k, probs.numel()))
    return list(zip(indices.tolist(), values.tolist()))

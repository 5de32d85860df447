"""One reader for every form weights come in, chosen by suffix as compiler/pipeline.py
chooses a net's reader: a .caffemodel, a saved .netdef, a .safetensors that `netdef
export` wrote, or {layer: [arrays]} from Python. Reading needs no torch, so `netdef check
--weights` checks a weights file without it."""
from pathlib import Path

import numpy as np

from compiler.frontends import caffemodel, safetensors_file, saved
from compiler.ir import LayerBlobs


def read_weights(weights):
    """A .caffemodel path, a saved .netdef, a .safetensors (netdef export's) or {layer: [arrays]} -> ([LayerBlobs], file)."""
    if isinstance(weights, dict):
        return [LayerBlobs(k, "", [np.asarray(a, np.float32) for a in v], [False] * len(v))
                for k, v in weights.items()], None
    file = str(weights)
    if file.endswith(saved.SUFFIX):
        return saved.read_saved(Path(file))[1], file
    if file.endswith(safetensors_file.SUFFIX):
        return safetensors_file.read_safetensors(file), file
    return caffemodel.read_caffemodel(file), file

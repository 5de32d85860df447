"""Regenerate the zoo's prototxt files from their netdef-language sources.

    python zoo_defs/generate.py           # rewrite every file listed in ZOO
    python zoo_defs/generate.py --check   # exit 1 if a checked-in file differs

Each file is what `netdef convert SOURCE --net NET -o FILE` writes; tests/test_zoo.py
checks that they are up to date and equal, layer by layer, to the published nets.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# prototxt file -> (.net source, net name)
ZOO = {
    "ResNet-18-deploy.prototxt": ("resnet.net", "ResNet-18"),
    "ResNet-34-deploy.prototxt": ("resnet.net", "ResNet-34"),
    "ResNet-50-deploy.prototxt": ("resnet.net", "ResNet-50"),
    "ResNet-101-deploy.prototxt": ("resnet.net", "ResNet-101"),
    "ResNet-152-deploy.prototxt": ("resnet.net", "ResNet-152"),
    "VGG_ILSVRC_16_layers_deploy.prototxt": ("vgg.net", "VGG_ILSVRC_16_layers"),
    "VGG_ILSVRC_19_layers_deploy.prototxt": ("vgg.net", "VGG_ILSVRC_19_layers"),
    "AlexNet-deploy.prototxt": ("alexnet.net", "AlexNet"),
    "CaffeNet-deploy.prototxt": ("alexnet.net", "CaffeNet"),
    "GoogLeNet.prototxt": ("googlenet.net", "GoogleNet"),
    "NIN-deploy.prototxt": ("nin.net", "nin_imagenet"),
    "LeNet-5.prototxt": ("lecture.net", "LeNet-5"),
    "Inception-module.prototxt": ("lecture.net", "Inception-module"),
    "Conv5x5.prototxt": ("lecture.net", "Conv5x5"),
    "Bottleneck.prototxt": ("lecture.net", "Bottleneck"),
}


def generate(name):
    from netdef.commands.convert import net_to_prototxt
    source, net = ZOO[name]
    return net_to_prototxt(HERE / source, net)


def main(argv):
    check = "--check" in argv
    stale = []
    for name in ZOO:
        text = generate(name)
        path = HERE / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print("wrote %s" % path)
    for name in stale:
        print("%s is out of date: run python zoo_defs/generate.py" % name, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

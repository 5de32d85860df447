import re

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', open("netdef/version.py").read()).group(1)

# Caffe's data layers: OpenCV decodes and resizes images as Caffe does, lmdb reads Datum
# databases, h5py reads HDF5Data sources (netdef/data).
DATA = ["opencv-python-headless>=4.5,<5", "lmdb", "h5py"]
# The photo example (examples/cat_coffee_neither.py) cuts its data set from the sample
# photos that ship inside scikit-image's wheel, and draws its result with matplotlib.
PHOTOS = ["scikit-image", "matplotlib"]

setup(
    name="netdef",
    version=VERSION,
    description="Caffe-compatible network compiler: prototxt, caffemodel and a DSL to PyTorch",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["netdef", "netdef.*", "compiler", "compiler.*", "grammar"]),
    package_data={"compiler.proto": ["caffe.proto"], "compiler.backends": ["draw_page.html"],
                  "grammar": ["*.lark"]},
    python_requires=">=3.9",
    install_requires=["protobuf>=4.21", "torch>=2.1", "numpy", "lark>=1.1", "networkx"],
    extras_require={"test": ["pytest", "hypothesis", "onnx", "onnxscript", "grpcio-tools", "h5py",
                             "safetensors", "onnxruntime"] + DATA + PHOTOS,
                    "data": DATA, "hdf5": ["h5py"], "plot": ["matplotlib"],
                    "safetensors": ["safetensors"],
                    "onnx": ["onnx", "onnxscript", "onnxruntime"],
                    # the acceptance runs (make acceptance): the digits examples and the photo example
                    "examples": DATA + PHOTOS + ["scikit-learn"], "bench": DATA + ["torchvision"]},
    entry_points={"console_scripts": ["netdef=netdef.cli:console"]},
)

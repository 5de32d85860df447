from setuptools import find_packages, setup

setup(
    name="netdef",
    version="0.1.0",
    description="Caffe-compatible network compiler: prototxt, caffemodel and a DSL to PyTorch",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["netdef", "netdef.*", "compiler", "compiler.*", "grammar"]),
    package_data={"compiler.proto": ["caffe.proto"], "compiler.backends": ["draw_page.html"],
                  "grammar": ["*.lark"]},
    python_requires=">=3.9",
    install_requires=["protobuf>=4.21", "torch>=2.1", "numpy", "lark>=1.1", "networkx"],
    extras_require={"test": ["pytest", "hypothesis", "onnx", "onnxscript", "matplotlib"],
                    "plot": ["matplotlib"]},
    entry_points={"console_scripts": ["netdef=netdef.cli:main"]},
)

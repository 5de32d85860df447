"""The README's custom-layer example works as written."""
import re
from pathlib import Path

import torch

from compiler.layers import registry
from tests.nets import HEADER, compile_text

README = Path(__file__).resolve().parent.parent / "README.md"


def test_custom_layer_example_registers_a_working_layer():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "register_layer" in b)
    try:
        exec(compile(block, "README.md", "exec"), {})
        model = compile_text(HEADER + 'layer { name: "m" type: "Mish" bottom: "data" top: "m" }\n')
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(model(x)["m"], torch.nn.functional.mish(x))
    finally:
        registry.unregister("Mish")

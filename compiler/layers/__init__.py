"""Built-in layer definitions, one module per layer family. Importing this package (or
anything in it) registers them all; base.py says what a definition holds, registry.py how
a user adds a type and how code above the compiler registers its hooks."""
from compiler.layers import (activations, conv, embedding, inner_product, input, loss, normalization,
                             pooling, recurrent, reduction, registry, scale_bias, ssd, structure)

for _module in (input, conv, pooling, inner_product, activations, normalization, scale_bias,
                structure, reduction, loss, ssd, embedding, recurrent):
    for _defn in _module.LAYERS:
        registry.register(_defn)

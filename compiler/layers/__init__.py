"""Built-in layer definitions, one module per layer family. Importing this package
registers them all; see base.py for what a definition holds."""
from compiler.layers import (activations, conv, inner_product, input, loss, normalization,
                             pooling, reduction, registry, scale_bias, ssd, structure)

for _module in (input, conv, pooling, inner_product, activations, normalization, scale_bias,
                structure, reduction, loss, ssd):
    for _defn in _module.LAYERS:
        registry.register(_defn)

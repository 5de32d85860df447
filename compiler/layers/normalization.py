"""(filled in by the layer work; see base.py for what a definition holds)"""

LAYERS = []

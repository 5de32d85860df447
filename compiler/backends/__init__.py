"""Backends turn a wired, shaped Net into something else: a torch.fx GraphModule (torch_fx)
carrying a ModuleRecord (record), blobs in and out of its parameters (torch_weights), a
.caffemodel (caffemodel), prototxt text (prototxt), netdef-language text (dsl_writer), a
summary (summary), pictures (draw), and the inference fast path that folds normalization
into convolutions (fold)."""

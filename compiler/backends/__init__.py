"""Backends turn a wired, shaped Net into something else: a torch.fx GraphModule
(torch_fx), prototxt text (prototxt), a .caffemodel (caffemodel), a summary (summary)."""

"""The netdef compiler: a net file -> IR -> passes -> a module, a file or a picture.

Its parts, each importing only the ones listed before it (tests/test_layout.py checks):

- beneath every stage: errors.py (located errors), proto/ (netdef's Caffe schema),
  state.py (Caffe's NetState), layers/ (one LayerDef per layer type, and the registry of
  types and hooks), ir.py (the network graph; a weights file's LayerBlobs),
  accounting.py (params, bytes, memory budget, which file blob fills which net blob),
  and the netdef language's definition in the top-level `grammar` package;
- frontends/: read files into the IR (prototxt, Caffe's load-time upgrades, caffemodel,
  saved .netdef, the netdef language); they run no pass;
- passes/: transform and check the IR (phase filter, wiring, shapes, validate);
- pipeline.py: read -> phase -> wire -> shapes -> checks, the one way to a checked net;
- backends/: turn a checked net into something else (torch.fx modules and their record,
  weights in and out, prototxt, the netdef language, summaries, drawings, the inference
  fast path); they may re-run the pipeline on a net they rewrite, never a frontend.

The `netdef` package (the API, the command, training, data and inference tools) builds on
the compiler; the compiler never imports it. Where the compiler needs what only code above
it knows (a data layer's shapes come from its source), it asks through a hook registered
in layers/registry.py.
"""

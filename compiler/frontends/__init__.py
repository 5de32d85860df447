"""Frontends read user files into the IR and run no pass: prototxt text (prototxt.py) with
Caffe's load-time upgrades (upgrade.py: V1 layers, legacy net inputs), .caffemodel
weights (caffemodel.py), netdef's saved .netdef zip (saved.py) and the netdef language
(dsl/, grammar in grammar/netdef.lark). compiler/pipeline.py chooses one by suffix."""

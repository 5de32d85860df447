"""Frontends read user files into the IR: prototxt (frontends.prototxt), caffemodel
weights (frontends.caffemodel), solver files (frontends.solver) and netdef's DSL."""

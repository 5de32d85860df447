"""Training with Caffe's solver: solver types, lr policies, the Solver, snapshots, the
training log, and the device/precision helpers every computing verb shares."""

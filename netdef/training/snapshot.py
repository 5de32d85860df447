"""Snapshots in Caffe's names and formats, written so that a crash never leaves half of one.

Solver::Snapshot writes PREFIX_iter_N.caffemodel (the train net's blobs) and then
PREFIX_iter_N.solverstate, a SolverState message: iter, learned_net (the .caffemodel's
path), current_step, and the history blobs in learnable-parameter order (AdaDelta and
Adam: the second set after the first). Real Caffe resumes from these files, and netdef
from Caffe's. `snapshot_format: HDF5` writes PREFIX_iter_N.caffemodel.h5 and
.solverstate.h5 in Caffe's HDF5 layout (data/<layer>/<i>; iter, learned_net,
current_step, history/<i>) when h5py is installed.

What Caffe does not keep and a bit-identical resume needs goes into a side file,
PREFIX_iter_N.solverstate.netdef.npz (plain arrays, read without pickle): the random
number generators' states, the data position (forward passes fed) and the fp16 loss
scale. A resume without it (from Caffe's files) starts the data
at iter x iter_size and the generators fresh.

Every file goes to a temporary name in the same folder, is fsynced and renamed into place;
the .solverstate, which a resume reads first, is renamed last.
"""
import os
import tempfile

import numpy as np
import torch

from compiler.backends.caffemodel import blob_field
from compiler.backends.torch_weights import copy_blob
from compiler.errors import NetdefError
from compiler.frontends.caffemodel import read_solver_state
from compiler.proto import caffe_pb2

SIDE_SUFFIX = ".netdef.npz"
STATE_HISTORY = 3          # SolverState.history


def write_durably(path, write):
    """write(f) into a temporary file beside `path`, fsync, rename over `path`, fsync the
    folder: `path` is either the old file or the complete new one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _history(solver):
    return [h for histories in solver.history for h in histories]


def _array(t):
    return t.detach().to("cpu", torch.float32).numpy()


def solver_state_chunks(solver, learned_net):
    """The bytes of a SolverState: the small fields by protobuf, the history blobs as
    Caffe BlobProtos written straight from the arrays (compiler/backends/caffemodel)."""
    head = caffe_pb2.SolverState(iter=solver.iter, learned_net=learned_net,
                                 current_step=solver.current_step)
    yield head.SerializeToString()
    for h in _history(solver):
        yield from blob_field(STATE_HISTORY, _array(h))


def _side_arrays(solver):
    arrays = {"iter": np.array(solver.iter), "passes": np.array(solver.passes),
              "torch_rng": torch.get_rng_state().numpy()}
    if solver.loss_scale is not None:
        arrays["loss_scale"] = np.array([solver.loss_scale, solver.good_steps], dtype=np.float64)
    if solver.device.type == "cuda":
        arrays["cuda_rng"] = torch.cuda.get_rng_state(solver.device).numpy()
    return arrays


def write(solver):
    """Snapshot the solver; returns the .solverstate path."""
    from compiler.backends.caffemodel import write_caffemodel
    p = solver.param
    base = "%s_iter_%d" % (p.snapshot_prefix, solver.iter)
    hdf5 = p.snapshot_format == caffe_pb2.SolverParameter.HDF5
    if hdf5:
        model, state = base + ".caffemodel.h5", base + ".solverstate.h5"
        write_durably(model, lambda f: _write_model_hdf5(f, solver))
    else:
        model, state = base + ".caffemodel", base + ".solverstate"
        write_durably(model, lambda f: write_caffemodel(f, solver.net, solver.module))
    write_durably(state + SIDE_SUFFIX, lambda f: np.savez(f, **_side_arrays(solver)))
    if hdf5:
        write_durably(state, lambda f: _write_state_hdf5(f, solver, model))
    else:
        write_durably(state, lambda f: [f.write(c) for c in solver_state_chunks(solver, model)])
    return state


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise NetdefError(path, None, None, "snapshot_format HDF5 needs h5py",
                          "pip install h5py, or use snapshot_format: BINARYPROTO") from None
    return h5py


def _write_model_hdf5(f, solver):
    from compiler.backends import torch_weights
    h5py = _h5py(f.name)
    with h5py.File(f, "w") as h:
        data = h.create_group("data")
        for layer, blobs in torch_weights.module_blobs(solver.net, solver.module).items():
            group = data.create_group(layer)
            for i, arr in enumerate(blobs):
                group.create_dataset(str(i), data=arr)


def _read_model_hdf5(path):
    """Caffe's HDF5 weights (data/<layer>/<i>) -> {layer: [arrays]}."""
    h5py = _h5py(path)
    try:
        with h5py.File(path, "r") as h:
            return {layer: [np.asarray(h["data"][layer][str(i)], np.float32)
                            for i in range(len(h["data"][layer]))] for layer in h["data"]}
    except (OSError, KeyError) as e:
        raise NetdefError(path, None, None, "not a Caffe HDF5 weights file: %s" % e) from None


def _write_state_hdf5(f, solver, model):
    h5py = _h5py(f.name)
    with h5py.File(f, "w") as h:
        h["iter"] = np.int32(solver.iter)
        h["learned_net"] = np.bytes_(model)
        h["current_step"] = np.int32(solver.current_step)
        group = h.create_group("history")
        for i, t in enumerate(_history(solver)):
            group.create_dataset(str(i), data=_array(t))


def read_state(path):
    """A .solverstate (or .solverstate.h5) -> (iter, learned_net or None, current_step,
    [history arrays])."""
    if str(path).endswith(".h5"):
        h5py = _h5py(path)
        try:
            with h5py.File(path, "r") as h:
                history = [np.asarray(h["history"][str(i)], np.float32) for i in range(len(h["history"]))]
                learned = h["learned_net"][()].decode() if "learned_net" in h else None
                return int(h["iter"][()]), learned, int(h["current_step"][()]), history
        except (OSError, KeyError) as e:
            raise NetdefError(str(path), None, None, "not a Caffe HDF5 solver state: %s" % e) from None
    return read_solver_state(path)


def restore(solver, path):
    """Solver::Restore: the iteration, the weights of learned_net (by layer name), the
    current step and the history; then netdef's side file when it is there."""
    from netdef.api import load_weights
    path = str(path)
    iteration, learned, current_step, history = read_state(path)
    expected = _history(solver)
    if len(history) != len(expected):
        raise NetdefError(path, None, None, "the solver state holds %d history blobs; this net with a %s "
                          "solver has %d" % (len(history), solver.param.type, len(expected)),
                          "it was written for another net or another solver type")
    for k, (have, want) in enumerate(zip(history, expected)):
        if have.size != want.numel():
            raise NetdefError(path, None, None, "history blob %d has %d values; this net's learnable "
                              "blob %d has %d" % (k, have.size, k % len(solver.params), want.numel()),
                              "the solver state was written for another net")
    if learned:
        model = learned
        if not os.path.exists(model):
            beside = os.path.join(os.path.dirname(path), os.path.basename(learned))
            if not os.path.exists(beside):
                raise NetdefError(path, None, None, "its weights file '%s' does not exist" % learned,
                                  "learned_net is resolved against the working directory, as Caffe does")
            model = beside
        weights = _read_model_hdf5(model) if model.endswith(".h5") else model
        report = load_weights(solver.net, solver.module, weights, strict=False)
        if solver.log is not None:
            solver.log.info("Restored weights from %s" % model)
        solver.restored_report = report
    with torch.no_grad():
        for have, want in zip(history, expected):
            copy_blob(want, have)
    solver.iter = iteration
    solver.lr_state["current_step"] = current_step
    solver.passes = iteration * solver.param.iter_size
    side = path + SIDE_SUFFIX
    if os.path.exists(side):
        with np.load(side, allow_pickle=False) as z:
            if int(z["iter"]) == iteration:
                solver.passes = int(z["passes"])
                torch.set_rng_state(torch.from_numpy(z["torch_rng"]))
                if "loss_scale" in z.files and solver.loss_scale is not None:
                    solver.loss_scale, solver.good_steps = float(z["loss_scale"][0]), int(z["loss_scale"][1])
                if "cuda_rng" in z.files and solver.device.type == "cuda":
                    torch.cuda.set_rng_state(torch.from_numpy(z["cuda_rng"]), solver.device)

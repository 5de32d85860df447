"""Caffe's data layers and tools: the data goldens of real Caffe, list parsing, the
DataTransformer's rules, convert-imageset/compute-mean, parallel loading, and the bad
inputs of the issue (exit 1, one located message, nothing written)."""
import hashlib
import importlib.util
import json
import shutil

import numpy as np
import pytest

from netdef.cli import main
from tests.conftest import GOLDEN, needs_shared, shared_tool

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the data extra) is not installed")
lmdb = pytest.importorskip("lmdb", reason="lmdb (the data extra) is not installed")
h5py = pytest.importorskip("h5py", reason="h5py (the data extra) is not installed")

DATA_CASES = sorted(p.parent.name for p in (GOLDEN / "data").glob("*/case.json"))


def copy_case(name, tmp_path):
    """A writable copy of a data case (../shared is read-only, and so are its files)."""
    case_dir = tmp_path / name
    shutil.copytree(GOLDEN / "data" / name, case_dir)
    set_writable(case_dir, True)
    return case_dir


def set_writable(folder, writable):
    for p in [folder] + list(folder.rglob("*")):
        p.chmod(p.stat().st_mode | 0o200 if writable else p.stat().st_mode & ~0o222)


def run_case(case_dir, out, *extra):
    """A case's own command, run in `case_dir` (the command line case.json gives)."""
    case = json.loads((case_dir / "case.json").read_text())
    argv = case["command"].split()[1:]
    argv[argv.index("--output") + 1] = str(out)
    return main(argv + list(extra))


@needs_shared
@pytest.mark.parametrize("name", DATA_CASES)
def test_data_golden(name, tmp_path, monkeypatch):
    """Every data case of real Caffe, from a read-only copy (LMDBs open without a lock file)."""
    case_dir = copy_case(name, tmp_path)
    set_writable(case_dir, False)
    monkeypatch.chdir(case_dir)
    try:
        assert run_case(case_dir, tmp_path / "out.npz") == 0
    finally:
        set_writable(case_dir, True)
    ok, line = shared_tool("check_golden").check_case(str(case_dir), str(tmp_path / "out.npz"))
    assert ok, line
    assert not list(case_dir.rglob("lock.mdb"))


@needs_shared
@pytest.mark.parametrize("name", ["data_lmdb_encoded_png", "data_lmdb_raw_meanfile_crop"])
def test_convert_imageset_and_compute_mean_write_what_caffes_tools_wrote(name, tmp_path, monkeypatch):
    case_dir = copy_case(name, tmp_path)
    monkeypatch.chdir(case_dir)
    case = json.loads((case_dir / "case.json").read_text())
    options = {"data_lmdb_encoded_png": ["--encoded"],
               "data_lmdb_raw_meanfile_crop": ["--resize-height", "32", "--resize-width", "32"]}[name]
    assert main(["data", "convert-imageset", "images/", "list.txt", "mine"] + options) == 0
    env = lmdb.open("mine", readonly=True, lock=False)
    with env.begin() as txn:
        got = [(k.decode(), hashlib.sha256(v).hexdigest()) for k, v in txn.cursor()]
    env.close()
    assert got == [(r["key"], r["value_sha256"]) for r in case["lmdb"][0]["records"]]
    if (case_dir / "mean.binaryproto").exists():
        assert main(["data", "compute-mean", "mine", "-o", "mine.binaryproto"]) == 0
        assert (case_dir / "mine.binaryproto").read_bytes() == (case_dir / "mean.binaryproto").read_bytes()


# --- small sources made here ------------------------------------------------------------

def write_images(folder, count=5, size=(12, 10)):
    """count colour PNGs whose pixel (y, x) of image i is (i, y, x) in B, G, R."""
    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(count):
        img = np.zeros(size + (3,), np.uint8)
        img[:, :, 0] = i * 10
        img[:, :, 1] = np.arange(size[0])[:, None] * 7
        img[:, :, 2] = np.arange(size[1])[None, :] * 11
        cv2.imwrite(str(folder / ("im %d.png" % i)), img)      # a space in the name
        lines.append("im %d.png %d" % (i, i))
    return lines


def image_data_net(path, source="list.txt", batch=2, transform="", extra="", phase="TEST"):
    path.write_text('name: "d"\nlayer { name: "data" type: "ImageData" top: "data" top: "label" '
                    'include { phase: %s } transform_param { %s } image_data_param { source: "%s" '
                    'root_folder: "images/" batch_size: %d %s } }\n' % (phase, transform, source, batch, extra))
    return path


@pytest.fixture
def image_case(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text("\n".join(write_images(tmp_path / "images")) + "\n")
    return tmp_path


def run_net(net, out, *extra):
    return main(["run", str(net), "--output", str(out)] + list(extra))


def test_list_lines_split_at_the_last_space_with_atoi_labels(tmp_path):
    from netdef.data.lists import read_image_list
    (tmp_path / "l.txt").write_bytes(b"a b.png 3\r\nc.png -2x\nd.png  \n")
    assert read_image_list(str(tmp_path / "l.txt")) == [("a b.png", 3, 1), ("c.png", -2, 2), ("d.png ", 0, 3)]


def test_image_data_reads_bgr_pixels_labels_and_wraps(image_case):
    net = image_data_net(image_case / "net.prototxt", batch=3)
    assert run_net(net, image_case / "out.npz", "--iterations", "2") == 0
    out = np.load(image_case / "out.npz")
    assert out["iter1/data"].shape == (3, 3, 12, 10)
    assert out["iter2/label"].tolist() == [3, 4, 0]
    first = out["iter2/data"][2]
    assert (first[0] == 0).all() and first[1, 5, 0] == 35 and first[2, 0, 4] == 44


def test_transform_order_crop_mirror_mean_scale_in_float32():
    from compiler.proto import caffe_pb2
    from netdef.data.transformer import DataTransformer
    p = caffe_pb2.TransformationParameter(crop_size=2, mean_value=[1, 2], scale=0.5)
    img = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    out = DataTransformer(p, "TEST")(img)
    want = (img[:, 1:3, 1:3].astype(np.float32) - np.array([1, 2], np.float32)[:, None, None]) * np.float32(0.5)
    assert out.dtype == np.float32 and np.array_equal(out, want)
    p.mirror = True
    train = DataTransformer(p, "TRAIN")
    seen = {train(img, np.random.default_rng(s)).tobytes() for s in range(40)}
    windows = {((img[:, y:y + 2, x:x + 2].astype(np.float32) - np.array([1, 2], np.float32)[:, None, None])
                * np.float32(0.5))[:, :, ::m].tobytes() for y in range(3) for x in range(3) for m in (1, -1)}
    assert seen <= windows and len(seen) > 9      # random crops and mirrors, every one a window


def test_train_randomness_follows_the_seed(image_case):
    net = image_data_net(image_case / "net.prototxt", transform="crop_size: 6 mirror: true",
                         extra="shuffle: true", phase="TRAIN")
    runs = {}
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        assert run_net(net, image_case / (name + ".npz"), "--phase", "train", "--iterations", "5",
                       "--seed", str(seed)) == 0
        runs[name] = np.load(image_case / (name + ".npz"))
    assert all(np.array_equal(runs["a"][k], runs["b"][k]) for k in runs["a"].files)
    assert any(not np.array_equal(runs["a"][k], runs["c"][k]) for k in runs["a"].files)
    labels = np.concatenate([runs["a"]["iter%d/label" % k] for k in range(1, 6)])
    assert sorted(labels[:5]) == sorted(labels[5:10]) == [0, 1, 2, 3, 4]   # each epoch a permutation
    assert not np.array_equal(labels[:5], labels[5:10])                   # reshuffled


def test_workers_make_the_same_batches_as_the_main_process(image_case):
    import netdef
    from netdef.data.feed import NetData
    net = netdef.parse(str(image_data_net(image_case / "net.prototxt", transform="crop_size: 6 mirror: true",
                                          phase="TRAIN")), "TRAIN")
    inline = NetData(net, seed=5).batches(start=2)
    parallel = NetData(net, seed=5, workers=2, prefetch=2).batches(start=2)
    for _ in range(3):
        a, b = next(inline), next(parallel)
        assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_ranks_read_disjoint_shards(image_case):
    import netdef
    from netdef.data.feed import NetData
    net = netdef.parse(str(image_data_net(image_case / "net.prototxt", batch=1)))
    labels = [[float(NetData(net, rank=r, world=2).batch(k)["label"][0]) for k in range(2)] for r in (0, 1)]
    assert labels == [[0, 2], [1, 3]]


def test_shapes_come_from_the_source_and_input_shape_works_without_it(image_case, capsys):
    net = image_data_net(image_case / "net.prototxt", transform="crop_size: 8")
    assert main(["summary", str(net)]) == 0
    assert "2x3x8x8" in capsys.readouterr().out
    (image_case / "list.txt").rename(image_case / "gone.txt")
    assert main(["summary", str(net)]) == 1
    assert "list.txt' does not exist" in capsys.readouterr().err
    assert main(["summary", str(net), "--input-shape", "data=4,3,8,8", "--input-shape", "label=4"]) == 0


def test_every_source_netdef_reads_has_its_shapes_hook():
    """netdef.data registers the hooks by type name without loading the readers; the names
    are those of the readers it has."""
    import netdef.data
    from netdef.data.sources import SOURCES
    assert set(netdef.data.SOURCE_TYPES) == set(SOURCES)


def make_lmdb(path, datums):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, d in enumerate(datums):
            txn.put(b"%08d" % i, d.SerializeToString())
    env.close()


def data_net(path, source, transform="", backend="LMDB"):
    path.write_text('name: "d"\nlayer { name: "data" type: "Data" top: "data" top: "label" '
                    'transform_param { %s } data_param { source: "%s" backend: %s batch_size: 2 } }\n'
                    % (transform, source, backend))
    return path


def bad_input(tmp_path, capsys, net, *extra):
    """Run `net`: exit 1, one located error, no output file."""
    out = tmp_path / "out.npz"
    assert run_net(net, out, *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    assert not out.exists()
    return err


def test_bad_list_line_names_the_list_file_and_line(image_case, capsys):
    (image_case / "list.txt").write_text("im 0.png 0\nim 1.png1\n".replace("im 1.png1", "im1.png_1"))
    err = bad_input(image_case, capsys, image_data_net(image_case / "net.prototxt"))
    assert "list.txt:2" in err and "no space before a label" in err


def test_missing_and_corrupt_images_are_named(image_case, capsys):
    (image_case / "images" / "im 3.png").write_bytes(b"not a png")
    (image_case / "images" / "im 4.png").unlink()
    net = image_data_net(image_case / "net.prototxt")
    err = bad_input(image_case, capsys, net, "--iterations", "2")
    assert "list.txt:4" in err and "im 3.png" in err


def test_crop_larger_than_the_image(image_case, capsys):
    err = bad_input(image_case, capsys, image_data_net(image_case / "net.prototxt", transform="crop_size: 11"))
    assert "crop_size 11 is larger than" in err and "net.prototxt:2" in err


def test_lmdb_that_is_missing_or_not_an_lmdb(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "does not exist" in bad_input(tmp_path, capsys, data_net(tmp_path / "n.prototxt", "nowhere"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"\0" * 8192)
    assert "not an LMDB" in bad_input(tmp_path, capsys, data_net(tmp_path / "n.prototxt", "junk"))


def test_datum_sizes_that_differ_and_a_mean_file_of_another_size(tmp_path, capsys, monkeypatch):
    from netdef.data.codec import image_datum, mean_blob
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path / "db", [image_datum(np.zeros((4, 4, 3), np.uint8), 0),
                                image_datum(np.zeros((5, 4, 3), np.uint8), 1)])
    err = bad_input(tmp_path, capsys, data_net(tmp_path / "n.prototxt", "db"))
    assert "record '00000001'" in err and "3x5x4" in err and "3x4x4" in err
    (tmp_path / "mean.binaryproto").write_bytes(mean_blob(np.zeros((3, 6, 6), np.float32)).SerializeToString())
    err = bad_input(tmp_path, capsys, data_net(tmp_path / "n.prototxt", "db", 'mean_file: "mean.binaryproto"'))
    assert "mean file is 3x6x6" in err


def test_hdf5_file_without_the_tops_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.zeros((3, 2), np.float32)
    (tmp_path / "list.txt").write_text("a.h5\n")
    net = tmp_path / "n.prototxt"
    net.write_text('layer { name: "h" type: "HDF5Data" top: "data" top: "label" '
                   'hdf5_data_param { source: "list.txt" batch_size: 2 } }\n')
    err = bad_input(tmp_path, capsys, net)
    assert "a.h5" in err and "no dataset 'label'" in err


def test_window_data_and_python_layers_are_refused_with_the_reason(tmp_path, capsys):
    for layer in ['type: "WindowData" top: "data" top: "label" window_data_param { source: "w.txt" }',
                  'type: "Python" top: "data" python_param { module: "m" layer: "L" }']:
        net = tmp_path / "n.prototxt"
        net.write_text('name: "x"\nlayer { name: "src" %s }\n' % layer)
        assert main(["check", str(net)]) == 1
        err = capsys.readouterr().err
        assert "n.prototxt:2" in err and "layer 'src'" in err and "not supported" in err


def test_memory_data_takes_its_declared_shape_and_arrays_from_input(tmp_path):
    net = tmp_path / "m.prototxt"
    net.write_text('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                   'memory_data_param { batch_size: 2 channels: 1 height: 3 width: 3 } }\n')
    np.savez(tmp_path / "in.npz", data=np.ones((2, 1, 3, 3), np.float32), label=np.arange(2, dtype=np.float32))
    assert main(["run", str(net), "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "o.npz")]) == 0
    assert np.load(tmp_path / "o.npz")["label"].tolist() == [0, 1]


def test_lmdb_workers_open_their_own_environment(tmp_path, monkeypatch):
    """The shapes hook opened the LMDB in this process; forked workers must not reuse it."""
    import netdef
    from netdef.data.codec import image_datum
    from netdef.data.feed import NetData
    monkeypatch.chdir(tmp_path)
    make_lmdb(tmp_path / "db", [image_datum(np.full((4, 4, 3), i, np.uint8), i) for i in range(5)])
    net = netdef.parse(str(data_net(tmp_path / "n.prototxt", "db")))
    inline, parallel = NetData(net).batches(), NetData(net, workers=2).batches()
    for _ in range(3):
        a, b = next(inline), next(parallel)
        assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_solver_feed_continues_and_restarts_at_the_asked_pass(image_case):
    import netdef
    from netdef.data.feed import NetData
    net = netdef.parse(str(image_data_net(image_case / "net.prototxt", batch=2)))
    feed = NetData(net)
    labels = [feed(j)["label"].tolist() for j in (0, 1, 2, 7)]
    assert labels == [[0, 1], [2, 3], [4, 0], [4, 0]]
    assert feed.next_pass(0)["label"].tolist() == [1, 2]


def test_leveldb_without_a_binding_says_how_to_convert(tmp_path, capsys, monkeypatch):
    if importlib.util.find_spec("plyvel") is not None:
        pytest.skip("plyvel is installed: backend LEVELDB works here")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ldb").mkdir()
    err = bad_input(tmp_path, capsys, data_net(tmp_path / "n.prototxt", "ldb", backend="LEVELDB"))
    assert "plyvel" in err and "convert-imageset" in err


def test_attach_feeds_a_solvers_nets_from_their_data_layers(image_case):
    """What `netdef train` does with a train_val net: seeds from random_seed, test nets
    read on across tests."""
    from types import SimpleNamespace
    import netdef
    from compiler.proto import caffe_pb2
    from netdef.data.feed import WaitShare, attach
    net = image_data_net(image_case / "net.prototxt", batch=2, transform="crop_size: 6 mirror: true",
                         phase="TRAIN")
    test_file = image_data_net(image_case / "test.prototxt", batch=3)
    solver = SimpleNamespace(param=caffe_pb2.SolverParameter(random_seed=7), net=netdef.parse(str(net), "TRAIN"),
                             test_nets=[(netdef.parse(str(test_file)), None)], feed=None, test_feeds=[])
    train = attach(solver, workers=0)
    share = WaitShare(train)
    assert [solver.feed(j)["label"].tolist() for j in range(3)] == [[0, 1], [2, 3], [4, 0]]
    assert 0 <= share() <= 1
    tests = [solver.test_feeds[0](i)["label"].tolist() for i in range(2)]
    assert tests == [[0, 1, 2], [3, 4, 0]] and solver.test_feeds[0](0)["label"].tolist() == [1, 2, 3]
    again = SimpleNamespace(**dict(vars(solver), feed=None, test_feeds=[]))
    attach(again, workers=0)
    assert np.array_equal(again.feed(2)["data"], solver.feed(2)["data"])     # random_seed repeats


def test_netdef_train_reads_data_layers_and_logs_the_data_wait(image_case, capsys):
    """A train_val net trains from its ImageData layers (no --feed); the log reports the
    share of time spent waiting for data."""
    (image_case / "net.prototxt").write_text(
        'name: "t"\nlayer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN } '
        'transform_param { crop_size: 8 mirror: true scale: 0.0039 } image_data_param { source: "list.txt" '
        'root_folder: "images/" batch_size: 2 shuffle: true } }\n'
        'layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST } '
        'transform_param { crop_size: 8 scale: 0.0039 } image_data_param { source: "list.txt" '
        'root_folder: "images/" batch_size: 5 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 '
        'weight_filler { type: "xavier" } } }\n'
        'layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }\n'
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    (image_case / "solver.prototxt").write_text(
        'net: "net.prototxt"\ntest_iter: 1\ntest_interval: 4\nbase_lr: 0.01\nlr_policy: "fixed"\n'
        'display: 2\nmax_iter: 4\nsnapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 3\n')
    assert main(["train", "solver.prototxt", "--data-workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "Iteration 4, data wait = " in err and "Test net output #0: acc = " in err

"""Solver files as Caffe reads them: nets, states, legacy fields, warnings, located errors."""
import pytest

from compiler.errors import NetdefError
from compiler.frontends.solver import read_solver
from netdef.training.solver import Solver, build_net

NET = '''name: "n"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }
layer { name: "extra" type: "ReLU" bottom: "ip" top: "r" include { stage: "deep" } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
'''
BASE = 'base_lr: 0.1\nmax_iter: 10\nlr_policy: "fixed"\n'


def read(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(text)
    return read_solver("solver.prototxt")


def test_nets_states_and_test_nets(tmp_path, monkeypatch):
    s = read(tmp_path, BASE + 'net: "net.prototxt"\ntest_iter: 3\ntest_iter: 1\ntest_interval: 5\n'
             'train_state { stage: "deep" }\ntest_state { level: 2 }\ntest_state { stage: "x" }\n'
             'solver_type: NESTEROV\ndevice_id: 1\nsolver_mode: GPU\n', monkeypatch)
    assert s.param.type == "Nesterov" and not s.param.HasField("solver_type")
    assert s.train_net.state.phase == "TRAIN" and s.train_net.state.stages == ("deep",)
    assert [t.state.level for t in s.test_nets] == [2, 0] and s.test_nets[1].state.stages == ("x",)
    assert [str(w).split(":")[1] for w in s.warnings] == ["13", "12"]    # solver_mode, device_id lines
    assert [l.name for l in build_net(s.train_net).layers][-1] == "extra"
    assert [l.name for l in build_net(s.test_nets[0]).layers][-1] == "acc"
    assert s.param.snapshot_prefix == "solver"


def test_inline_net_param_errors_point_into_the_solver(tmp_path, monkeypatch):
    inline = NET.replace("num_output: 4", "num_output: 4 } param { lr_mult: 1").replace('name: "n"\n', "")
    bad = inline.replace('bottom: "ip" bottom: "label" }', 'bottom: "ipp" bottom: "label" }')
    s = read(tmp_path, BASE + "net_param {\n" + bad + "}\n", monkeypatch)
    with pytest.raises(NetdefError) as e:
        build_net(s.train_net)
    err = e.value.errors[0]
    assert err.file == "solver.prototxt" and err.line == 8 and "did you mean 'ip'" in str(err)


@pytest.mark.parametrize("extra,needle,line", [
    ('train_net: "net.prototxt"\ntest_iter: 2\ntest_iter: 3\ntest_net: "net.prototxt"\n',
     "2 test_iter values for 1 test nets", 5),
    ('net: "net.prototxt"\ntest_iter: 2\n', "test nets need a positive test_interval", 5),
    ('net: "net.prototxt"\ntest_iter: 2\ntest_interval: 1\ntest_state {}\ntest_state {}\n',
     "2 test_state values for 1 test nets", 7),
    ('net: "net.prototxt"\nsolver_type: ADAM\ntype: "Adam"\n', "both solver_type", 5),
    ('net: "net.prototxt"\nregularization_type: "L3"\n', 'unknown regularization_type "L3"', 5),
    ('', "the solver names no train net", None),
])
def test_solver_problems_are_located(tmp_path, monkeypatch, extra, needle, line):
    with pytest.raises(NetdefError) as e:
        read(tmp_path, BASE + extra, monkeypatch)
    err = e.value.errors[0]
    assert needle in err.message and err.line == line


@pytest.mark.parametrize("extra,needle", [
    ('type: "AdaGrad"\nmomentum: 0.9\n', "AdaGrad does not use momentum"),
    ('lr_policy: "step"\n', "needs a positive stepsize"),
    ('type: "RMSProp"\nrms_decay: 1.5\n', "rms_decay must be in [0, 1)"),
])
def test_type_and_policy_checks(tmp_path, monkeypatch, extra, needle):
    s = read(tmp_path, BASE.replace('lr_policy: "fixed"\n', "") + 'net: "net.prototxt"\n'
             + ('' if "lr_policy" in extra else 'lr_policy: "fixed"\n') + extra, monkeypatch)
    with pytest.raises(NetdefError) as e:
        Solver(s)
    assert needle in str(e.value)

"""mc.trace: the ops, kernel launches and GEMMs of a step, in order, with their work; nothing outside."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import autograd, cli
from minicnn.backends import host
from minicnn.backends.reference import ReferenceBackend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_host = pytest.mark.skipif(not host.available(), reason="minicnn._host is not built (pip install -e .)")


@pytest.fixture
def cpu_backend():
    """Set the CPU backend for one test, and put back the one that was set."""
    previous = mc.get_cpu_backend()
    yield mc.set_cpu_backend
    mc.set_cpu_backend(previous)


def tiny_net():
    """conv1 (3 -> 4, 3x3) on the input, conv2 (4 -> 6, 3x3, two groups), a linear layer."""
    mc.manual_seed(0)
    return mc.nn.Sequential(mc.nn.Conv2d(3, 4, 3, padding=1), mc.nn.ReLU(), mc.nn.Conv2d(4, 6, 3, groups=2),
                            mc.nn.Flatten(), mc.nn.Linear(6 * 6 * 6, 5))


def one_step(model, optimizer, x, labels=np.array([0, 1])):
    loss = F.cross_entropy(model(x), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def traced_step(model=None, input_requires_grad=False, optimizer=mc.optim.SGD):
    model = model or tiny_net()
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32),
                  requires_grad=input_requires_grad)
    opt = optimizer(model.parameters(), lr=0.01)
    with mc.trace(model=model) as t:
        one_step(model, opt, x)
    return t


def launches_of(trace, module, phase):
    return [r for r in trace.launches if r["module"] == module and r["phase"] == phase]


@needs_host
def test_conv_forward_runs_im2col_then_the_gemm_and_conv1_backward_skips_col2im(cpu_backend):
    cpu_backend("kernels")
    t = traced_step()
    assert [r["op"] for r in t.ops][:3] == ["Conv2d", "ReLU", "Conv2d"]
    for conv in ("0", "2"):
        forward = [r["kernel"] for r in launches_of(t, conv, "forward")]
        assert "im2col" in forward and "gemm" in forward and forward.index("im2col") < forward.index("gemm")
    # conv1's input needs no gradient, so its backward folds no columns back into an image
    conv1_backward = [r["kernel"] for r in launches_of(t, "0", "backward")]
    assert "gemm" in conv1_backward and "col2im" not in conv1_backward
    assert "col2im" in [r["kernel"] for r in launches_of(t, "2", "backward")]
    # ... because of needs_input_grad: an input that needs its gradient gets its col2im
    t = traced_step(input_requires_grad=True)
    assert "col2im" in [r["kernel"] for r in launches_of(t, "0", "backward")]


@needs_host
def test_the_forward_columns_serve_the_weight_gradient_unless_too_large(cpu_backend, monkeypatch):
    from minicnn.backends import kernels
    cpu_backend("kernels")
    model = tiny_net()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    t = traced_step(model)
    for conv in ("0", "2"):          # small columns: kept by forward, so backward runs no im2col
        assert "im2col" not in [r["kernel"] for r in launches_of(t, conv, "backward")]
    kept = {k: v.copy() for k, v in model.state_dict().items()}
    monkeypatch.setattr(kernels, "KEEP_COLUMNS", 0)       # nothing small enough: computed again
    model.load_state_dict(state)
    t = traced_step(model)
    for conv in ("0", "2"):
        assert "im2col" in [r["kernel"] for r in launches_of(t, conv, "backward")]
    for name, value in model.state_dict().items():        # the same step, bit for bit
        np.testing.assert_array_equal(value, kept[name], err_msg=name)


@needs_host
def test_inference_and_frozen_layers_keep_no_columns(cpu_backend):
    cpu_backend("kernels")
    x = mc.Tensor(np.ones((1, 2, 5, 5), np.float32))
    w = mc.Tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    with mc.no_grad():
        assert mc.functional.conv2d(x, w).grad_fn is None
    frozen = mc.functional.conv2d(mc.Tensor(x.data, requires_grad=True), mc.Tensor(w.data))
    assert frozen.grad_fn.saved_tensors[2] is None        # no weight gradient: no columns kept
    trained = mc.functional.conv2d(x, w)
    assert trained.grad_fn.saved_tensors[2]["cols"].shape == (1, 2 * 3 * 3, 9)


@needs_host
def test_gemm_flops_are_2mnk_of_the_conv_shape(cpu_backend):
    cpu_backend("kernels")
    t = traced_step()
    # conv1: N=2 images, O=4 filters of K = C*kh*kw = 3*3*3 = 27 terms, on an 8x8 output (padding 1):
    # the GEMMs (however the batch is laid out) make O*N*OH*OW outputs of K terms each
    for conv, outputs, terms in (("0", 4 * 2 * 8 * 8, 3 * 3 * 3), ("2", 6 * 2 * 6 * 6, 2 * 3 * 3)):
        gemms = [r for r in launches_of(t, conv, "forward") if r["kernel"] == "gemm"]
        assert gemms and all(g["gemm"]["k"] == terms for g in gemms)
        assert sum(g["gemm"]["batch"] * g["gemm"]["m"] * g["gemm"]["n"] for g in gemms) == outputs
        for g in gemms:
            d = g["gemm"]
            assert g["flops"] == 2 * d["batch"] * d["m"] * d["n"] * d["k"]
        op = [r for r in t.ops if r["module"] == conv and r["phase"] == "forward"][0]
        assert op["flops"] == sum(g["flops"] for g in gemms) == 2 * outputs * terms
    conv2 = [r for r in t.ops if r["module"] == "2" and r["phase"] == "forward"][0]
    assert conv2["shapes"] == [[2, 4, 8, 8], [6, 2, 3, 3], [6], [2, 6, 6, 6]]
    im2col = launches_of(t, "0", "forward")[0]
    assert im2col["kernel"] == "im2col" and im2col["count"] > 0 and im2col["shapes"][0] == [2, 3, 8, 8]
    assert im2col["bytes"] == 4 * (2 * 3 * 8 * 8 + 2 * 27 * 64)       # the images and their columns, float32


def test_the_reference_backend_trace_names_its_numpy_methods(cpu_backend):
    cpu_backend("reference")
    t = traced_step()
    kernels = {r["kernel"] for r in t.launches}
    assert {"conv2d_forward", "conv2d_backward", "relu_forward", "linear_backward", "sgd_update"} <= kernels
    assert not kernels & {"im2col", "gemm", "col2im"} and {r["runner"] for r in t.launches} == {"reference"}
    conv1 = launches_of(t, "0", "forward")[0]
    assert conv1["kernel"] == "conv2d_forward" and conv1["flops"] == 2 * 2 * 4 * 64 * 27
    assert conv1["outputs"] == [[2, 4, 8, 8]]
    # backward returns no data gradient for conv1: only dw and db
    (backward,) = launches_of(t, "0", "backward")
    assert backward["outputs"] == [[4, 3, 3, 3], [4]] and backward["flops"] == 2 * 2 * 4 * 64 * 27
    # a method called with keywords is read the same way
    reference = mc.backends.reference_backend()
    with mc.trace() as t:
        reference.linear_forward(w=np.ones((5, 3)), b=None, x=np.ones((2, 3)))
    (launch,) = t.launches
    assert launch["shapes"] == [[2, 3], [5, 3]] and launch["outputs"] == [[2, 5]] and launch["flops"] == 2 * 2 * 5 * 3


def test_every_op_forward_backward_and_the_optimizer_step_in_order():
    t = traced_step(optimizer=mc.optim.Adam)
    names = [(r["op"], r["phase"]) for r in t.ops]
    forward = [("Conv2d", "forward"), ("ReLU", "forward"), ("Conv2d", "forward"), ("Reshape", "forward"),
               ("Linear", "forward"), ("CrossEntropy", "forward")]
    backward = [(op, "backward") for op, _ in reversed(forward)]
    assert names == forward + backward + [("Adam.step", "step")]
    updates = [r for r in t.launches if r["op"] == "Adam.step"]
    assert len(updates) == 6 and all(r["kernel"] == "adam_update" and r["phase"] == "step" for r in updates)
    assert all(r["seconds"] >= 0 for r in t.records)
    assert all(r["cpu_seconds"] >= 0 for r in t.launches)
    text = str(t)
    assert "Conv2d 0 forward" in text and "Adam.step" in text and "adam_update" in text


def test_summary_shares_sum_to_one():
    t = traced_step()
    s = t.summary()
    for rows in (s.by_op, s.by_kernel):
        assert sum(g["share"] for g in rows) == pytest.approx(1.0, abs=1e-9)
        assert all(g["seconds"] >= 0 for g in rows)
    assert sum(g["calls"] for g in s.by_op) == len(t.ops)
    assert sum(g["calls"] for g in s.by_kernel) == len(t.launches)
    assert {g["name"] for g in s.by_op} >= {"Conv2d forward", "Conv2d backward", "SGD.step"}
    assert "by kernel" in str(s) and "share" in str(s)


def test_to_json_round_trips():
    t = traced_step()
    data = json.loads(t.to_json())
    assert data == t.to_dict() and data["seconds"] == t.seconds
    assert [r["kind"] for r in data["records"]].count("op") == len(t.ops) == 13
    assert json.loads(json.dumps(t.summary().to_dict()))["by_op"][0]["share"] > 0


def test_nothing_is_watched_outside_a_trace():
    original = dict(run=host.HostLoader.__dict__["run"], gemm=host.HostLoader.__dict__["gemm"],
                    conv=ReferenceBackend.__dict__["conv2d_forward"])
    model = tiny_net()
    opt = mc.optim.SGD(model.parameters(), lr=0.01)
    x = mc.Tensor(np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(ZeroDivisionError):
        with mc.trace() as t:
            one_step(model, opt, x)
            1 / 0
    recorded = len(t.records)
    assert recorded > 0 and t.seconds is not None
    assert autograd._observers == []
    assert (host.HostLoader.__dict__["run"], host.HostLoader.__dict__["gemm"],
            ReferenceBackend.__dict__["conv2d_forward"]) == (original["run"], original["gemm"], original["conv"])
    one_step(model, opt, x)
    assert len(t.records) == recorded
    with pytest.raises(RuntimeError, match="one block"):
        with t:
            pass


def test_nested_traces_both_record():
    model = tiny_net()
    opt = mc.optim.SGD(model.parameters(), lr=0.01)
    x = mc.Tensor(np.ones((2, 3, 8, 8), np.float32))
    with mc.trace() as outer:
        with mc.trace() as inner:
            one_step(model, opt, x)
        one_step(model, opt, x)
    assert len(outer.ops) == 2 * len(inner.ops) and len(outer.launches) == 2 * len(inner.launches) > 0
    assert autograd._observers == []


def test_minicnn_trace_variable_prints_the_table_at_exit(tmp_path):
    script = ("import numpy as np, minicnn as mc, minicnn.functional as F\n"
              "w = mc.Tensor(np.ones((4, 3, 3, 3), np.float32), requires_grad=True)\n"
              "F.conv2d(mc.Tensor(np.ones((1, 3, 5, 5), np.float32)), w).sum().backward()\n"
              "print('script done')\n")
    env = dict(os.environ, PYTHONPATH=ROOT, MINICNN_TRACE="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("script done") < out.index("trace: ") < out.index("summary: ")
    assert "Conv2d forward" in out and "Conv2d backward" in out and "by kernel" in out
    env["MINICNN_TRACE"] = "0"
    quiet = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert quiet.stdout == "script done\n"


@pytest.mark.parametrize("backend", ["reference", pytest.param("kernels", marks=needs_host)])
def test_trace_command(backend, capsys):
    assert cli.main(["trace", "alexnet_small", "--batch", "2", "--device", "cpu", "--cpu-backend", backend]) == 0
    out = capsys.readouterr().out
    assert f"CPU, {backend} backend" in out and "Conv2d conv1 forward" in out and "SGD.step" in out
    assert ("im2col" in out) == (backend == "kernels") and ("conv2d_forward" in out) == (backend == "reference")
    assert "by op" in out and "by kernel" in out

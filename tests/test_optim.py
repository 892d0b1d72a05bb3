"""Optimizers against steps computed by hand, and the learning-rate schedules."""

import math

import numpy as np
import pytest

import minicnn as mc
from minicnn import optim


@pytest.fixture(params=["reference", "kernels"], autouse=True)
def cpu_backend(request):
    """Every test runs on the NumPy reference and on the csrc kernels compiled for the host."""
    if request.param == "kernels":
        pytest.importorskip("minicnn._host", reason="the host kernels are not built (pip install -e .)")
    previous = mc.get_cpu_backend()
    mc.set_cpu_backend(request.param)
    yield request.param
    mc.set_cpu_backend(previous)


def param(values, grad):
    p = mc.Parameter(np.array(values, dtype=np.float64))
    p.grad = np.array(grad, dtype=np.float64)
    return p


def test_sgd_plain_step():
    p = param([1.0, -2.0], [0.5, 0.25])
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.025])


def test_sgd_momentum_and_weight_decay_two_steps_by_hand():
    p = param([1.0, -2.0], [0.5, 0.25])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()
    # step 1: g = grad + wd w = [0.51, 0.23]; v = g; w = w - lr v
    np.testing.assert_allclose(p.data, [1.0 - 0.051, -2.0 - 0.023])
    p.grad = np.array([-1.0, 0.0])
    opt.step()
    w1 = np.array([0.949, -2.023])
    g2 = np.array([-1.0, 0.0]) + 0.01 * w1
    v2 = 0.9 * np.array([0.51, 0.23]) + g2
    np.testing.assert_allclose(p.data, w1 - 0.1 * v2)
    np.testing.assert_allclose(opt.state[0]["velocity"], v2)


def test_sgd_nesterov_by_hand():
    p = param([1.0], [2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    opt.step()  # v = 2; w -= lr (g + m v) = 0.1 * 3
    np.testing.assert_allclose(p.data, [0.7])
    p.grad = np.array([1.0])
    opt.step()  # v = 0.5*2 + 1 = 2; w -= 0.1 * (1 + 0.5*2)
    np.testing.assert_allclose(p.data, [0.5])


def test_adam_two_steps_by_hand():
    p = param([1.0, 2.0], [0.5, -1.0])
    opt = optim.Adam([p], lr=0.01, betas=(0.8, 0.9), eps=1e-8)
    w = np.array([1.0, 2.0])
    m = v = np.zeros(2)
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.1, 0.3])], start=1):
        p.grad = g
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-8)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)
    assert opt.state[0]["step"] == 2


def test_frozen_parameters_and_missing_gradients_are_skipped():
    frozen = param([1.0], [5.0])
    frozen.requires_grad_(False)
    unused = mc.Parameter(np.array([3.0]))  # grad is None: it took no part in the loss
    used = param([1.0], [1.0])
    opt = optim.SGD([frozen, unused, used], lr=0.1, momentum=0.9)
    opt.step()
    np.testing.assert_array_equal(frozen.data, [1.0])
    np.testing.assert_array_equal(unused.data, [3.0])
    np.testing.assert_allclose(used.data, [0.9])
    assert set(opt.state) == {2}  # no momentum buffer for the skipped ones


def test_parameter_groups_have_their_own_settings():
    slow, fast = param([1.0], [1.0]), param([1.0], [1.0])
    opt = optim.SGD([{"params": [slow], "lr": 0.01}, {"params": [fast]}], lr=0.1)
    opt.step()
    np.testing.assert_allclose([slow.data[0], fast.data[0]], [0.99, 0.9])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [slow]}, {"params": [slow]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer settings"):
        optim.SGD([{"params": [slow], "momentun": 0.9}], lr=0.1)


def test_zero_grad_and_bad_settings():
    p = param([1.0], [1.0])
    opt = optim.SGD([p], lr=0.1)
    opt.zero_grad()
    assert p.grad is None
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([p], lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(1.0, 0.9))


def test_optimizer_state_dict_round_trip():
    p = param([1.0, 2.0], [0.5, -1.0])
    opt = optim.Adam([p], lr=0.01)
    opt.step()
    state = opt.state_dict()
    q = param([1.0, 2.0], [0.5, -1.0])
    q.data[:] = p.data
    again = optim.Adam([q], lr=0.5)
    again.load_state_dict(state)
    assert again.param_groups[0]["lr"] == 0.01
    p.grad, q.grad = np.array([0.3, 0.3]), np.array([0.3, 0.3])
    opt.step()
    again.step()
    np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="SGD"):
        optim.SGD([q], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="sizes"):
        optim.Adam([q, param([1.0], [1.0])]).load_state_dict(state)


def test_step_lr():
    p = param([1.0], [0.0])
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_reduce_lr_on_plateau_divides_by_ten_when_the_error_stops_improving():
    p = param([1.0], [0.0])
    opt = optim.SGD([{"params": [p]}, {"params": [param([1.0], [0.0])], "lr": 0.1}], lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, factor=0.1, patience=2)
    errors = [0.50, 0.40, 0.40, 0.41, 0.40, 0.30, 0.35, 0.36, 0.31, 0.32, 0.33]
    lrs = []
    for e in errors:
        sched.step(e)
        lrs.append(opt.param_groups[0]["lr"])
    # epochs 3, 4, 5 do not beat 0.40: after the third of them (patience 2) the lr falls;
    # 0.30 is a new best; 0.35, 0.36, 0.31 do not beat it: it falls again
    expected = [0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001]
    np.testing.assert_allclose(lrs, expected)
    assert math.isclose(opt.param_groups[1]["lr"], 0.001)  # every group is divided
    with pytest.raises(ValueError, match="finite"):
        sched.step(float("nan"))


def test_plateau_threshold_min_lr_mode_max_and_state():
    opt = optim.SGD([param([1.0], [0.0])], lr=1.0)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0, threshold=0.1, min_lr=0.3)
    sched.step(1.0)
    sched.step(1.05)  # less than 10% better: not an improvement
    assert opt.param_groups[0]["lr"] == 0.5
    sched.step(1.2)
    assert opt.param_groups[0]["lr"] == 0.5
    sched.step(1.0)
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] == 0.3  # never below min_lr
    copy = optim.ReduceLROnPlateau(opt, mode="max")
    copy.load_state_dict(sched.state_dict())
    assert copy.best == 1.2 and copy.bad_epochs == sched.bad_epochs
    with pytest.raises(ValueError, match="StepLR"):
        copy.load_state_dict(optim.StepLR(opt, 1).state_dict())

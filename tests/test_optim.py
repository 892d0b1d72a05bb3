"""Optimizers against steps computed by hand and against the naive loops, the learning-rate
schedules, and the update kernels.

- every backend: SGD and Adam steps (tensors on the backend's device) by hand and
  against naive.sgd_update / naive.adam_update;
- backend: each kernel backend's sgd_update/adam_update against the ReferenceBackend;
- kernel: the raw minicnn._host update kernels against the reference, bit for bit.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
from minicnn import backends, naive, optim

from fixtures import DTYPES, MANY_EXAMPLES, host_kernel, randn

R = backends.reference_backend()


def param(values, grad, backend=None):
    """A float64 Parameter with a gradient, on the backend's device (the CPU without one)."""
    put = np.asarray if backend is None else backend.array
    p = mc.Parameter(put(np.array(values, dtype=np.float64)))
    p.grad = put(np.array(grad, dtype=np.float64))
    return p


def test_sgd_plain_step(backend):
    p = param([1.0, -2.0], [0.5, 0.25], backend)
    optim.SGD([p], lr=0.1).step()
    backend.assert_close(p.data, [1.0 - 0.05, -2.0 - 0.025])


def test_sgd_momentum_and_weight_decay_two_steps_by_hand(backend):
    p = param([1.0, -2.0], [0.5, 0.25], backend)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()
    # step 1: g = grad + wd w = [0.51, 0.23]; v = g; w = w - lr v
    backend.assert_close(p.data, [1.0 - 0.051, -2.0 - 0.023])
    p.grad = backend.array(np.array([-1.0, 0.0]))
    opt.step()
    w1 = np.array([0.949, -2.023])
    g2 = np.array([-1.0, 0.0]) + 0.01 * w1
    v2 = 0.9 * np.array([0.51, 0.23]) + g2
    backend.assert_close(p.data, w1 - 0.1 * v2)
    backend.assert_close(opt.state[0]["velocity"], v2)


def test_sgd_nesterov_by_hand(backend):
    p = param([1.0], [2.0], backend)
    opt = optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True)
    opt.step()  # v = 2; w -= lr (g + m v) = 0.1 * 3
    backend.assert_close(p.data, [0.7])
    p.grad = backend.array(np.array([1.0]))
    opt.step()  # v = 0.5*2 + 1 = 2; w -= 0.1 * (1 + 0.5*2)
    backend.assert_close(p.data, [0.5])


def test_adam_two_steps_by_hand(backend):
    p = param([1.0, 2.0], [0.5, -1.0], backend)
    opt = optim.Adam([p], lr=0.01, betas=(0.8, 0.9), eps=1e-8)
    w = np.array([1.0, 2.0])
    m = v = np.zeros(2)
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.1, 0.3])], start=1):
        p.grad = backend.array(g)
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-8)
        backend.assert_close(p.data, w, rtol=1e-12)
    assert opt.state[0]["step"] == 2


def test_frozen_parameters_and_missing_gradients_are_skipped(backend):
    frozen = param([1.0], [5.0], backend)
    frozen.requires_grad_(False)
    unused = mc.Parameter(backend.array(np.array([3.0])))  # grad is None: it took no part in the loss
    used = param([1.0], [1.0], backend)
    opt = optim.SGD([frozen, unused, used], lr=0.1, momentum=0.9)
    opt.step()
    backend.assert_equal(frozen.data, [1.0])
    backend.assert_equal(unused.data, [3.0])
    backend.assert_close(used.data, [0.9])
    assert set(opt.state) == {2}  # no momentum buffer for the skipped ones


def test_parameter_groups_have_their_own_settings(backend):
    slow, fast = param([1.0], [1.0], backend), param([1.0], [1.0], backend)
    opt = optim.SGD([{"params": [slow], "lr": 0.01}, {"params": [fast]}], lr=0.1)
    opt.step()
    np.testing.assert_allclose([backend.numpy(slow.data)[0], backend.numpy(fast.data)[0]], [0.99, 0.9])
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


def test_optimizer_state_dict_round_trip(backend):
    p = param([1.0, 2.0], [0.5, -1.0], backend)
    opt = optim.Adam([p], lr=0.01)
    opt.step()
    state = opt.state_dict()
    q = param([1.0, 2.0], [0.5, -1.0], backend)
    q.data[:] = p.data
    again = optim.Adam([q], lr=0.5)
    again.load_state_dict(state)
    assert again.param_groups[0]["lr"] == 0.01
    p.grad, q.grad = backend.array(np.array([0.3, 0.3])), backend.array(np.array([0.3, 0.3]))
    opt.step()
    again.step()
    backend.assert_equal(p.data, backend.numpy(q.data))
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


# --------------------------------------------------------------------------- every backend, against the naive loops
@pytest.mark.parametrize("momentum, weight_decay, nesterov", [(0.0, 0.0, False), (0.9, 5e-4, False), (0.9, 1e-2, True)])
def test_sgd_steps_match_the_naive_loop(backend, momentum, weight_decay, nesterov):
    rng = np.random.default_rng(1)
    w, grads = rng.standard_normal(7), [rng.standard_normal(7) for _ in range(3)]
    p = param(w, grads[0], backend)
    opt = optim.SGD([p], lr=0.05, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    velocity = np.zeros(7)
    for g in grads:
        p.grad = backend.array(g)
        opt.step()
        w, velocity = naive.sgd_update(w, g, velocity, 0.05, momentum, weight_decay, nesterov)
        backend.assert_close(p.data, w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_steps_match_the_naive_loop(backend, weight_decay):
    rng = np.random.default_rng(2)
    w, grads = rng.standard_normal(7), [rng.standard_normal(7) for _ in range(3)]
    p = param(w, grads[0], backend)
    opt = optim.Adam([p], lr=1e-2, betas=(0.8, 0.95), eps=1e-8, weight_decay=weight_decay)
    m, v = np.zeros(7), np.zeros(7)
    for step, g in enumerate(grads, start=1):
        p.grad = backend.array(g)
        opt.step()
        w, m, v = naive.adam_update(w, g, m, v, 1e-2, 0.8, 0.95, 1e-8, weight_decay, step)
        backend.assert_close(p.data, w, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- backend, against the reference
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_match_reference(kernel_backend, dtype):
    be, rng = kernel_backend, np.random.default_rng(8)
    for momentum, nesterov in ((0.0, False), (0.9, False), (0.9, True)):
        p, g, v = randn(rng, (1000,), dtype), randn(rng, (1000,), dtype), randn(rng, (1000,), dtype)
        gp, gv = be.array(p), be.array(v)
        be.impl.sgd_update(gp, be.array(g), gv, 0.01, momentum, 5e-4, nesterov)
        R.sgd_update(p, g, v, 0.01, momentum, 5e-4, nesterov)
        be.assert_same_arithmetic(gp, p)
        be.assert_same_arithmetic(gv, v)
    for weight_decay in (0.0, 1e-2):
        p, g = randn(rng, (1000,), dtype), randn(rng, (1000,), dtype)
        m, v = np.zeros_like(p), np.zeros_like(p)
        gp, gm, gv = be.array(p), be.array(m), be.array(v)
        for step in (1, 2, 3):
            be.impl.adam_update(gp, be.array(g), gm, gv, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
            R.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
            for a, r in ((gp, p), (gm, m), (gv, v)):
                be.assert_same_arithmetic(a, r)


# --------------------------------------------------------------------------- kernels
@given(size=st.integers(1, 50), momentum=st.sampled_from([0.0, 0.9]), weight_decay=st.sampled_from([0.0, 5e-4]),
       nesterov=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_sgd_update_kernel_bitwise(size, momentum, weight_decay, nesterov, dtype, seed):
    rng = np.random.default_rng(seed)
    param_, grad, velocity = (randn(rng, (size,), dtype) for _ in range(3))
    p_ref, v_ref = param_.copy(), velocity.copy()
    for _ in range(3):
        host_kernel("sgd_update", dtype)(size, param_, grad, velocity, 0.01, momentum, weight_decay, int(nesterov))
        R.sgd_update(p_ref, grad, v_ref, 0.01, momentum, weight_decay, nesterov)
    # the same operations in the same order, with the scalars rounded to T as NumPy does: exact
    np.testing.assert_array_equal(param_, p_ref)
    np.testing.assert_array_equal(velocity, v_ref)


@given(size=st.integers(1, 50), weight_decay=st.sampled_from([0.0, 1e-2]), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_adam_update_kernel_bitwise(size, weight_decay, dtype, seed):
    rng = np.random.default_rng(seed)
    host = backends.host_backend()
    host_kernel("adam_update", dtype)        # skipped without the host build
    param_, grad = randn(rng, (size,), dtype), randn(rng, (size,), dtype)
    m, v = np.zeros_like(param_), np.zeros_like(param_)
    p_ref, m_ref, v_ref = param_.copy(), m.copy(), v.copy()
    for step in range(1, 4):
        host.adam_update(param_, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
        R.adam_update(p_ref, grad, m_ref, v_ref, 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
    # adam_update computes 1 - beta and the bias corrections in double, as the reference: exact
    for ours, ref in ((param_, p_ref), (m, m_ref), (v, v_ref)):
        np.testing.assert_array_equal(ours, ref)

"""Optimizers against steps computed by hand and against the naive loops, the learning-rate
schedules, and the update kernels.

- every backend: SGD and Adam steps (tensors on the backend's device) by hand and
  against naive.sgd_update / naive.adam_update;
- backend: each kernel backend's sgd_update/adam_update against the ReferenceBackend;
- kernel: the raw minicnn._host update kernels against the reference, bit for bit.
"""

import math
import warnings

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


# --------------------------------------------------------------------------- AdamW and RMSprop
def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: the comparison with torch.optim is skipped")


def _against_torch(make_ours, make_theirs, backend, steps=6, seed=0):
    """The same gradients, step after step, into our optimizer and torch's, on two (3, 4) float64
    parameters; after every step the weights and the optimizer's buffers agree."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    starts = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [param(w, np.zeros_like(w), backend) for w in starts]
    theirs = [torch.tensor(w, requires_grad=True) for w in starts]
    opt, torch_opt = make_ours(ours), make_theirs(theirs)
    for _ in range(steps):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(t.shape) * rng.uniform(0.1, 3)
            p.grad, t.grad = backend.array(g), torch.tensor(g)
        opt.step()
        torch_opt.step()
        for p, t in zip(ours, theirs):
            backend.assert_close(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    return opt, torch_opt


@pytest.mark.parametrize("settings", [dict(), dict(lr=0.05, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)])
def test_adamw_steps_equal_torch_optim_adamw(backend, settings):
    torch = _torch()
    opt, torch_opt = _against_torch(lambda ps: optim.AdamW(ps, **settings),
                                    lambda ps: torch.optim.AdamW(ps, foreach=False, **settings), backend)
    for pos, t in enumerate(torch_opt.param_groups[0]["params"]):
        backend.assert_close(opt.state[pos]["m"], torch_opt.state[t]["exp_avg"].numpy(), rtol=1e-12)
        backend.assert_close(opt.state[pos]["v"], torch_opt.state[t]["exp_avg_sq"].numpy(), rtol=1e-12)
    assert optim.AdamW([param([1.0], [0.0])]).param_groups[0]["weight_decay"] == 1e-2     # PyTorch's default


def test_adamw_decay_is_decoupled_from_the_gradient(backend):
    # a zero gradient: Adam's L2 decay goes through m / sqrt(v) and moves the weight by ~lr;
    # AdamW's shrinks it by exactly lr * weight_decay of itself
    for kind, expected in ((optim.Adam, 1.0 - 0.1), (optim.AdamW, 1.0 * (1 - 0.1 * 0.5))):
        p = param([1.0], [0.0], backend)
        kind([p], lr=0.1, weight_decay=0.5).step()
        backend.assert_close(p.data, [expected], rtol=1e-6)


@pytest.mark.parametrize("settings", [dict(), dict(lr=0.03, alpha=0.9, eps=1e-6, weight_decay=0.1),
                                      dict(momentum=0.9), dict(centered=True),
                                      dict(lr=0.02, momentum=0.5, centered=True, weight_decay=0.01)])
def test_rmsprop_steps_equal_torch_optim_rmsprop(backend, settings):
    torch = _torch()
    opt, torch_opt = _against_torch(lambda ps: optim.RMSprop(ps, **settings),
                                    lambda ps: torch.optim.RMSprop(ps, foreach=False, **settings), backend)
    for pos, t in enumerate(torch_opt.param_groups[0]["params"]):
        theirs = torch_opt.state[t]
        backend.assert_close(opt.state[pos]["square_avg"], theirs["square_avg"].numpy(), rtol=1e-12)
        for ours_name, their_name in (("grad_avg", "grad_avg"), ("momentum_buffer", "momentum_buffer")):
            assert (ours_name in opt.state[pos]) == (their_name in theirs)
            if their_name in theirs:
                backend.assert_close(opt.state[pos][ours_name], theirs[their_name].numpy(), rtol=1e-10)


@pytest.mark.parametrize("momentum, centered, weight_decay", [(0.0, False, 0.0), (0.9, True, 1e-2), (0.5, False, 0.1)])
def test_rmsprop_and_adamw_steps_match_the_naive_loops(backend, momentum, centered, weight_decay):
    rng = np.random.default_rng(3)
    w, grads = rng.standard_normal(7), [rng.standard_normal(7) for _ in range(3)]
    p = param(w, grads[0], backend)
    opt = optim.RMSprop([p], lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=weight_decay, momentum=momentum,
                        centered=centered)
    q = param(w, grads[0], backend)
    adamw = optim.AdamW([q], lr=1e-2, betas=(0.8, 0.95), weight_decay=weight_decay)
    state = [np.zeros(7)] * 3
    w_adamw, m, v = w, np.zeros(7), np.zeros(7)
    for step, g in enumerate(grads, start=1):
        p.grad, q.grad = backend.array(g), backend.array(g)
        opt.step()
        adamw.step()
        w, *state = naive.rmsprop_update(w, g, *state, 1e-2, 0.9, 1e-8, weight_decay, momentum, centered)
        w_adamw, m, v = naive.adamw_update(w_adamw, g, m, v, 1e-2, 0.8, 0.95, 1e-8, weight_decay, step)
        backend.assert_close(p.data, w, rtol=1e-12, atol=1e-15)
        backend.assert_close(q.data, w_adamw, rtol=1e-12, atol=1e-15)


def test_rmsprop_and_adamw_settings_and_state():
    p = param([1.0], [1.0])
    for bad, match in ((dict(alpha=-0.1), "alpha"), (dict(alpha=1.5), "alpha"), (dict(eps=-1), "eps"),
                       (dict(momentum=-0.5), "momentum"), (dict(weight_decay=-1), "weight_decay"), (dict(lr=-1), "learning rate")):
        with pytest.raises(ValueError, match=match):
            optim.RMSprop([p], **bad)
    with pytest.raises(ValueError, match="AdamW betas"):
        optim.AdamW([p], betas=(0.9, 1.0))
    opt = optim.RMSprop([p], momentum=0.9, centered=True)
    opt.step()
    q = param([1.0], [1.0])
    q.data[:] = p.data
    again = optim.RMSprop([q], momentum=0.9, centered=True)
    again.load_state_dict(opt.state_dict())
    opt.step()
    again.step()
    np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="'AdamW'.*Adam"):
        optim.Adam([q]).load_state_dict(optim.AdamW([q]).state_dict())


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_and_rmsprop_updates_match_reference(kernel_backend, dtype):
    be, rng = kernel_backend, np.random.default_rng(9)
    p, g = randn(rng, (1000,), dtype), randn(rng, (1000,), dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    gp, gm, gv = be.array(p), be.array(m), be.array(v)
    for step in (1, 2, 3):
        be.impl.adamw_update(gp, be.array(g), gm, gv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        R.adamw_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, step)
        for a, r in ((gp, p), (gm, m), (gv, v)):
            be.assert_same_arithmetic(a, r)
    for momentum, centered in ((0.0, False), (0.9, False), (0.0, True), (0.9, True)):
        sq, ga, buf = (np.zeros_like(p) for _ in range(3))
        gsq, gga, gbuf = be.array(sq), be.array(ga), be.array(buf)
        for _ in range(3):
            be.impl.rmsprop_update(gp, be.array(g), gsq, gga if centered else None, gbuf if momentum else None,
                                   1e-2, 0.99, 1e-8, 1e-2, momentum, centered)
            R.rmsprop_update(p, g, sq, ga if centered else None, buf if momentum else None,
                             1e-2, 0.99, 1e-8, 1e-2, momentum, centered)
            for a, r in ((gp, p), (gsq, sq), (gga, ga), (gbuf, buf)):
                be.assert_same_arithmetic(a, r)


@given(size=st.integers(1, 50), weight_decay=st.sampled_from([0.0, 1e-2]), momentum=st.sampled_from([0.0, 0.9]),
       centered=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_adamw_and_rmsprop_update_kernels_bitwise(size, weight_decay, momentum, centered, dtype, seed):
    rng = np.random.default_rng(seed)
    host_kernel("adamw_update", dtype)         # skipped without the host build
    host = backends.host_backend()
    param_, grad = randn(rng, (size,), dtype), randn(rng, (size,), dtype)
    ours = [param_.copy()] + [np.zeros_like(param_) for _ in range(2)]
    ref = [a.copy() for a in ours]
    for step in range(1, 4):
        host.adamw_update(ours[0], grad, ours[1], ours[2], 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
        R.adamw_update(ref[0], grad, ref[1], ref[2], 1e-3, 0.9, 0.999, 1e-8, weight_decay, step)
    for a, r in zip(ours, ref):
        np.testing.assert_array_equal(a, r)
    ours = [param_.copy()] + [np.zeros_like(param_) for _ in range(3)]
    ref = [a.copy() for a in ours]
    for _ in range(3):
        for p, sq, ga, buf, backend in ((*ours, host), (*ref, R)):
            backend.rmsprop_update(p, grad, sq, ga if centered else None, buf if momentum else None,
                                   1e-2, 0.99, 1e-8, weight_decay, momentum, centered)
    for a, r in zip(ours, ref):
        np.testing.assert_array_equal(a, r)


# --------------------------------------------------------------------------- schedules against torch's
def _lrs(scheduler, optimizer, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        scheduler.step()
    return np.array(lrs)


def _two_groups(make_optimizer, torch_params=None):
    if torch_params is None:
        groups = [{"params": [param([1.0], [0.0])]}, {"params": [param([1.0], [0.0])], "lr": 0.3}]
    else:
        groups = [{"params": [torch_params[0]]}, {"params": [torch_params[1]], "lr": 0.3}]
    return make_optimizer(groups)


@pytest.mark.parametrize("make", [
    lambda lib, opt: lib.StepLR(opt, step_size=3, gamma=0.5),
    lambda lib, opt: lib.LinearLR(opt, start_factor=0.1, total_iters=4),
    lambda lib, opt: lib.LinearLR(opt, start_factor=1.0, end_factor=0.2, total_iters=6),
    lambda lib, opt: lib.CosineAnnealingLR(opt, T_max=7),
    lambda lib, opt: lib.CosineAnnealingLR(opt, T_max=5, eta_min=0.01),       # and on past T_max
    lambda lib, opt: lib.SequentialLR(opt, [lib.LinearLR(opt, start_factor=0.01, total_iters=3),
                                            lib.CosineAnnealingLR(opt, T_max=9, eta_min=1e-3)], milestones=[3]),
    lambda lib, opt: lib.SequentialLR(opt, [lib.LinearLR(opt, 0.5, total_iters=2), lib.StepLR(opt, 2, 0.5),
                                            lib.CosineAnnealingLR(opt, T_max=4)], milestones=[2, 6]),
], ids=["step", "warmup", "linear-decay", "cosine", "cosine-eta-min-past-T_max", "warmup-then-cosine", "three"])
def test_schedules_give_torchs_learning_rates(make):
    torch = _torch()
    epochs = 14
    ours = _two_groups(lambda groups: optim.SGD(groups, lr=0.1, momentum=0.9))
    torch_params = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    theirs = _two_groups(lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9), torch_params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # torch warns that scheduler.step() came before optimizer.step()
        expected = _lrs(make(torch.optim.lr_scheduler, theirs), theirs, epochs)
    np.testing.assert_allclose(_lrs(make(optim, ours), ours, epochs), expected, rtol=1e-10, atol=1e-15)


def test_schedule_state_and_errors():
    opt = optim.SGD([param([1.0], [0.0])], lr=0.1)
    warmup = optim.SequentialLR(opt, [optim.LinearLR(opt, 0.1, total_iters=2), optim.CosineAnnealingLR(opt, 8)], [2])
    for _ in range(5):
        warmup.step()
    lr = opt.param_groups[0]["lr"]
    again = optim.SequentialLR(opt, [optim.LinearLR(opt, 0.1, total_iters=2), optim.CosineAnnealingLR(opt, 8)], [2])
    again.load_state_dict(warmup.state_dict())
    warmup.step()
    again.step()
    assert opt.param_groups[0]["lr"] != lr and again.epoch == warmup.epoch == 6
    with pytest.raises(ValueError, match="one milestone fewer"):
        optim.SequentialLR(opt, [optim.LinearLR(opt)], milestones=[3])
    with pytest.raises(TypeError, match="ReduceLROnPlateau"):
        optim.SequentialLR(opt, [optim.LinearLR(opt), optim.ReduceLROnPlateau(opt)], milestones=[3])
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="start_factor"):
        optim.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="'CosineAnnealingLR'.*StepLR"):
        optim.StepLR(opt, 2).load_state_dict(optim.CosineAnnealingLR(opt, 3).state_dict())

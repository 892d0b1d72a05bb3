"""Softmax and the losses: softmax, log_softmax, cross_entropy (softmax cross-entropy),
binary_cross_entropy_with_logits, and the softmax cross-entropy kernels.

- functional: the F ops on every backend against the naive definitions, backward by
  mc.gradcheck in float64; huge logits stay finite on every backend (the row max);
- backend: each kernel backend's softmax_cross_entropy_forward/backward against the
  ReferenceBackend;
- kernel: the raw minicnn._host kernels against the reference.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive

from fixtures import DTYPES, MANY_EXAMPLES, TOL, host_kernel, randn

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
@given(n=st.integers(1, 4), c=st.integers(1, 6), seed=st.integers(0, 2**16), axis=st.sampled_from([0, 1, -1]))
def test_softmax_and_log_softmax(backend, n, c, seed, axis):
    z = np.random.default_rng(seed).standard_normal((n, c)) * 5
    expected = naive.softmax(z, axis)
    backend.assert_close(F.softmax(backend.tensor(z), axis).data, expected, rtol=1e-10)
    backend.assert_close(F.log_softmax(backend.tensor(z), axis).data, np.log(expected), rtol=1e-10, atol=1e-12)
    backend.assert_close(F.log_softmax(backend.tensor(z), axis).data, naive.log_softmax(z, axis), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t: F.softmax(t, axis), [backend.tensor(z, True)])
    assert mc.gradcheck(lambda t: F.log_softmax(t, axis), [backend.tensor(z, True)])


@given(n=st.integers(1, 5), c=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_cross_entropy(backend, n, c, seed):
    rng = np.random.default_rng(seed)
    z, labels = rng.standard_normal((n, c)) * 3, rng.integers(0, c, n)
    backend.assert_close(F.cross_entropy(backend.tensor(z), labels).data, naive.cross_entropy(z, labels), rtol=1e-12)
    assert mc.gradcheck(lambda t: F.cross_entropy(t, labels), [backend.tensor(z, True)])


def test_cross_entropy_is_stable_for_huge_logits(backend):
    # exp(1000) overflows: only a softmax that subtracts the whole row's max stays finite,
    # and the second row's max is its last logit
    z = backend.tensor(np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32), True)
    loss = F.cross_entropy(z, np.array([0, 0]))
    assert np.isfinite(loss.item()) and abs(loss.item() - 500.0) < 1e-3
    assert naive.cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), [0, 0]) == 500.0
    loss.backward()
    assert np.isfinite(backend.numpy(z.grad)).all()
    backend.assert_close(z.grad, [[0.0, 0.0], [-0.5, 0.5]], atol=1e-6)


@given(n=st.integers(1, 4), c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_binary_cross_entropy_with_logits(backend, n, c, seed):
    rng = np.random.default_rng(seed)
    z, t = rng.standard_normal((n, c)) * 4, (rng.random((n, c)) > 0.5).astype(np.float64)
    backend.assert_close(F.binary_cross_entropy_with_logits(backend.tensor(z), t).data,
                         naive.binary_cross_entropy_with_logits(z, t), rtol=1e-10)
    assert mc.gradcheck(lambda v: F.binary_cross_entropy_with_logits(v, t), [backend.tensor(z, True)])


# --------------------------------------------------------------------------- backend, against the reference
def test_softmax_cross_entropy_matches_reference(kernel_backend):
    be, rng = kernel_backend, np.random.default_rng(7)
    logits, labels = randn(rng, (32, 1000), np.float32) * 5, rng.integers(0, 1000, 32)
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    loss, probs = be.impl.softmax_cross_entropy_forward(be.array(logits), be.array(labels))
    be.assert_close(loss, loss_ref, **TOL[np.float32])
    be.assert_close(probs, probs_ref, **TOL[np.float32])
    for dloss in (np.float32(0.5), np.array(0.5, np.float32)):      # a number, or a 0-d array of the device
        dloss_arg = be.array(dloss) if isinstance(dloss, np.ndarray) else dloss
        be.assert_close(be.impl.softmax_cross_entropy_backward(probs, be.array(labels), dloss_arg),
                        R.softmax_cross_entropy_backward(probs_ref, labels, np.float32(0.5)), **TOL[np.float32])


def test_softmax_cross_entropy_float64_matches_reference(kernel_backend):
    be, rng = kernel_backend, np.random.default_rng(11)
    logits, labels = randn(rng, (4, 6)), np.array([0, 5, 2, 2])
    loss, probs = be.impl.softmax_cross_entropy_forward(be.array(logits), be.array(labels))
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    be.assert_close(loss, loss_ref, **TOL[np.float64])
    be.assert_close(be.impl.softmax_cross_entropy_backward(probs, be.array(labels), be.array(np.array(0.5))),
                    R.softmax_cross_entropy_backward(probs_ref, labels, 0.5), **TOL[np.float64])


# --------------------------------------------------------------------------- kernels
@given(n=st.integers(1, 6), k=st.integers(1, 12), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31),
       spread=st.sampled_from([1.0, 30.0]))
@MANY_EXAMPLES
def test_softmax_cross_entropy_kernels(n, k, dtype, seed, spread):
    rng = np.random.default_rng(seed)
    logits = randn(rng, (n, k), dtype) * dtype(spread)      # large logits test the max shift
    labels = rng.integers(0, k, n).astype(np.int64)
    loss, probs = backends.host_backend().softmax_cross_entropy_forward(logits, labels)   # its four kernels
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(probs, probs_ref, **TOL[dtype])
    np.testing.assert_allclose(loss, loss_ref, **TOL[dtype])
    dloss = np.array([0.7], dtype=dtype)
    dlogits = np.empty_like(logits)
    host_kernel("softmax_cross_entropy_backward", dtype)(logits.size, probs_ref, labels, dloss, dlogits, n, k)
    np.testing.assert_allclose(dlogits, R.softmax_cross_entropy_backward(probs_ref, labels, dloss[0]), **TOL[dtype])


def test_cross_entropy_bad_label_gives_nan_not_a_bad_read():
    logits, labels = np.zeros((2, 3), np.float32), np.array([1, 7])
    part_max, part_sum = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    row_max, log_sum, rows = (np.empty((2,), np.float32) for _ in range(3))
    host_kernel("softmax_cross_entropy_forward", np.float32)(2, logits, labels, part_max, part_sum, row_max, log_sum,
                                                             rows, 3, 3)
    assert np.isfinite(rows[0]) and np.isnan(rows[1])

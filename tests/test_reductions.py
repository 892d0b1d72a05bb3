"""The row reductions of csrc/ (sum_rows, the softmax cross-entropy kernels, mean_forward),
compiled for the CPU (minicnn._host), against the NumPy reference and an in-order oracle.

These kernels split each row over S neighbouring threads (coalesced reads on a GPU) and
merge the S partial results in a second pass (docs/kernels.md, "Reductions"). The
split must not change what is computed: the partial sums are held bit for bit against
a left-to-right sum of exactly the elements each partial owns, and the whole reductions
against the reference within float rounding, for row lengths below, at and far above
the split (1, 31, 32, 33, ..., 3025 = AlexNet conv1's 55x55).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_host = pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")

from minicnn import backends  # noqa: E402
from minicnn.backends.kernels import ROW_SPLIT  # noqa: E402

R = backends.reference_backend()
HOST = backends.host_backend()
DTYPES = [np.float32, np.float64]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# float rounding of sums in another order than NumPy's pairwise one
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
LENGTHS = st.sampled_from([1, 2, 5, 31, 32, 33, 64, 100, 1000, 3025])


def kernel(name, dtype):
    return getattr(_host, f"{name}_{np.dtype(dtype).name}")


def in_order_sum(values, dtype):
    """A left-to-right sum in dtype: what one thread's loop computes."""
    total = dtype(0)
    for v in values:
        total = dtype(total + v)
    return total


@given(rows=st.integers(1, 5), length=st.integers(1, 70), split=st.integers(1, 40),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_sum_rows_partials_bitwise(rows, length, split, dtype, seed):
    # partial (r, s) adds x[r, s], x[r, s + S], ... in order; with S > L the extra partials are 0
    x = np.random.default_rng(seed).standard_normal((rows, length)).astype(dtype)
    out = np.full((rows, split), np.nan, dtype=dtype)
    kernel("sum_rows", dtype)(rows * split, x, out, length, split)
    expected = np.array([[in_order_sum(x[r, s::split], dtype) for s in range(split)] for r in range(rows)], dtype)
    np.testing.assert_array_equal(out, expected)


@given(rows=st.integers(1, 6), length=LENGTHS, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_row_sums_and_bias_gradient(rows, length, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, length)).astype(dtype)
    # two sums of the same numbers in different orders differ by at most about n * eps * sum |x|
    # (a fixed tolerance fails where the terms nearly cancel: 2.1e-5 off for 3025 float32 numbers)
    bound = length * np.finfo(dtype).eps * np.abs(x).astype(np.float64).sum(axis=1)
    assert (np.abs(HOST._sum_rows(x).astype(np.float64) - x.astype(np.float64).sum(axis=1)) <= bound).all()
    # the conv bias gradient: rows (n, o) of OH*OW, then the batch
    dy = rng.standard_normal((2, rows, length)).astype(dtype)
    bound = 2 * length * np.finfo(dtype).eps * np.abs(dy).astype(np.float64).sum(axis=(0, 2))
    assert (np.abs(HOST._bias_grad(dy).astype(np.float64) - dy.astype(np.float64).sum(axis=(0, 2))) <= bound).all()


@given(n=st.integers(1, 40), k=LENGTHS, spread=st.sampled_from([1.0, 30.0, 1e3]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_softmax_cross_entropy_forward(n, k, spread, dtype, seed):
    # large spreads: most exp(z - slice max) underflow, and the merge must rescale each slice
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, k)) * spread).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    loss, probs = HOST.softmax_cross_entropy_forward(logits, labels)
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, labels)
    np.testing.assert_allclose(probs, probs_ref, **TOL[dtype])
    np.testing.assert_allclose(loss, loss_ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * max(1.0, spread))
    assert loss.shape == () and loss.dtype == dtype


def test_softmax_slices_are_merged_with_their_own_max():
    # every slice's max is far below the row max but one: a merge that forgot to rescale
    # part_sum by exp(part_max - row_max) would add 31 sums of about 1 instead of about 0
    k = 2 * ROW_SPLIT
    logits = np.full((1, k), -50.0)
    logits[0, 5] = 50.0
    part_max, part_sum = np.empty((1, ROW_SPLIT)), np.empty((1, ROW_SPLIT))
    kernel("softmax_partials", np.float64)(ROW_SPLIT, logits, part_max, part_sum, k, ROW_SPLIT)
    assert part_max[0, 5] == 50.0 and part_max[0, 0] == -50.0 and part_sum[0, 0] == 2.0
    loss, probs = HOST.softmax_cross_entropy_forward(logits, np.array([5]))
    loss_ref, probs_ref = R.softmax_cross_entropy_forward(logits, np.array([5]))
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12, atol=1e-40)


@given(n=st.integers(1, 500), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@SETTINGS
def test_mean_of_row_losses(n, dtype, seed):
    rows = np.random.default_rng(seed).random(n).astype(dtype) * 10
    split = min(ROW_SPLIT, n)
    partial, loss = np.empty((split,), dtype), np.empty((1,), dtype)
    kernel("sum_rows", dtype)(split, rows, partial, n, split)
    kernel("mean_forward", dtype)(1, partial, loss, split, n)
    np.testing.assert_allclose(loss[0], rows.mean(), **TOL[dtype])

"""Pooling: max_pool2d (overlapping, ties to the first maximum), avg_pool2d, global_avg_pool2d,
and their kernels.

- functional: the F ops on every backend against naive.max_pool2d / avg_pool2d /
  global_avg_pool2d (max pooling on tie-free inputs, a shuffled linspace), backward by
  mc.gradcheck in float64, over shapes, strides and paddings drawn by hypothesis;
- backend: each kernel backend's pooling methods against the ReferenceBackend;
- kernel: the raw minicnn._host kernels against the reference.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive

from fixtures import DTYPES, MANY_EXAMPLES, TOL, geometry, host_kernel, randn, tie_free, window_case

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
pool_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "c": st.integers(1, 3), "k": st.integers(1, 4), "stride": st.integers(1, 3),
    "pad": st.integers(0, 2), "h": st.integers(4, 7), "w": st.integers(4, 7), "seed": st.integers(0, 2**16),
})


@given(case=pool_cases)
def test_max_pool2d_forward_and_backward(backend, case):
    k, s, p = case["k"], case["stride"], min(case["pad"], case["k"] // 2)
    x = tie_free(np.random.default_rng(case["seed"]), (case["n"], case["c"], case["h"], case["w"]))
    y = F.max_pool2d(backend.tensor(x), k, s, p)
    backend.assert_equal(y.data, naive.max_pool2d(x, k, s, p))
    assert mc.gradcheck(lambda t: F.max_pool2d(t, k, s, p), [backend.tensor(x, True)])


@given(case=pool_cases)
def test_avg_pool2d_forward_and_backward(backend, case):
    k, s, p = case["k"], case["stride"], min(case["pad"], case["k"] // 2)
    x = np.random.default_rng(case["seed"]).standard_normal((case["n"], case["c"], case["h"], case["w"]))
    y = F.avg_pool2d(backend.tensor(x), k, s, p)
    backend.assert_close(y.data, naive.avg_pool2d(x, k, s, p), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [backend.tensor(x, True)])


def test_max_pool_overlapping_alexnet_sizes_and_stride_default(backend):
    x = backend.tensor(np.random.default_rng(0).standard_normal((1, 2, 55, 55)), True)
    assert F.max_pool2d(x, 3, 2).shape == (1, 2, 27, 27)
    assert F.max_pool2d(x, 5).shape == (1, 2, 11, 11)   # stride defaults to the kernel size


def test_max_pool_ties_go_to_the_first_maximum(backend):
    x = backend.tensor(np.ones((1, 1, 2, 2)), True)
    y = F.max_pool2d(x, 2)
    y.backward(np.ones((1, 1, 1, 1)))
    backend.assert_equal(x.grad[0, 0], [[1, 0], [0, 0]])


def test_global_avg_pool2d(backend):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    backend.assert_close(F.global_avg_pool2d(backend.tensor(x)).data, x.mean(axis=(2, 3)))
    backend.assert_close(F.global_avg_pool2d(backend.tensor(x)).data, naive.global_avg_pool2d(x), rtol=1e-12)
    assert mc.gradcheck(F.global_avg_pool2d, [backend.tensor(x, True)])


# --------------------------------------------------------------------------- backend, against the reference
POOL_CASES = [((2, 96, 55, 55), (3, 3), (2, 2), (0, 0)), ((3, 4, 7, 9), (3, 2), (1, 2), (1, 1)),
              ((1, 2, 4, 4), (2, 2), (2, 2), (0, 0))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_matches_reference_bitwise(kernel_backend, case, dtype):
    shape, kernel, stride, padding = case
    be, rng = kernel_backend, np.random.default_rng(3)
    for x in (tie_free(rng, shape, dtype), rng.integers(-2, 3, shape).astype(dtype)):      # tie-free, then ties
        y, argmax = be.impl.max_pool2d_forward(be.array(x), kernel, stride, padding)
        y_ref, argmax_ref = R.max_pool2d_forward(x, kernel, stride, padding)
        be.assert_equal(y, y_ref)
        be.assert_equal(argmax, argmax_ref)
        dy = randn(rng, y_ref.shape, dtype)
        dx = be.impl.max_pool2d_backward(be.array(dy), argmax, shape, kernel, stride, padding)
        be.assert_equal(dx, R.max_pool2d_backward(dy, argmax_ref, shape, kernel, stride, padding))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool_matches_reference(kernel_backend, case, dtype):
    shape, kernel, stride, padding = case
    be, rng = kernel_backend, np.random.default_rng(4)
    x = randn(rng, shape, dtype)
    y_ref = R.avg_pool2d_forward(x, kernel, stride, padding)
    be.assert_close(be.impl.avg_pool2d_forward(be.array(x), kernel, stride, padding), y_ref, **TOL[dtype])
    dy = randn(rng, y_ref.shape, dtype)
    be.assert_close(be.impl.avg_pool2d_backward(be.array(dy), shape, kernel, stride, padding),
                    R.avg_pool2d_backward(dy, shape, kernel, stride, padding), **TOL[dtype])


# --------------------------------------------------------------------------- kernels
@given(case=window_case(), ties=st.booleans())
@MANY_EXAMPLES
def test_max_pool_kernels_bitwise(case, ties):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    # with ties (small integers) the winner must be the first maximum in row-major window order
    x = rng.integers(-2, 3, case["shape"]).astype(dtype) if ties else tie_free(rng, case["shape"], dtype)
    geo = geometry(case)
    oh, ow = geo[-2:]
    y = np.empty(case["shape"][:2] + (oh, ow), dtype=dtype)
    argmax = np.empty(y.shape, dtype=np.int64)
    host_kernel("max_pool_forward", dtype)(y.size // ow, x, y, argmax, *geo)         # one row per (n, c, oy)
    y_ref, argmax_ref = R.max_pool2d_forward(x, case["kernel"], case["stride"], case["padding"])
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)

    dy = randn(rng, y.shape, dtype)
    dx = np.full(case["shape"], np.nan, dtype=dtype)
    host_kernel("max_pool_backward", dtype)(dx.size // dx.shape[3], dy, argmax, dx, *geo)  # per (n, c, y)
    np.testing.assert_array_equal(
        dx, R.max_pool2d_backward(dy, argmax_ref, case["shape"], case["kernel"], case["stride"], case["padding"]))


@given(case=window_case())
@MANY_EXAMPLES
def test_avg_pool_kernels(case):
    rng, dtype = np.random.default_rng(case["seed"]), case["dtype"]
    x = randn(rng, case["shape"], dtype)
    geo = geometry(case)
    oh, ow = geo[-2:]
    # the padding at the bottom and right (the same as at the top and left here) and count_include_pad
    divisor_args = (case["padding"][0], case["padding"][1], 1)
    y = np.empty(case["shape"][:2] + (oh, ow), dtype=dtype)
    host_kernel("avg_pool_forward", dtype)(y.size, x, y, *geo, *divisor_args)
    np.testing.assert_allclose(y, R.avg_pool2d_forward(x, case["kernel"], case["stride"], case["padding"]),
                               **TOL[dtype])
    dy = randn(rng, y.shape, dtype)
    dx = np.empty_like(x)
    host_kernel("avg_pool_backward", dtype)(dx.size, dy, dx, *geo, *divisor_args)
    np.testing.assert_allclose(
        dx, R.avg_pool2d_backward(dy, case["shape"], case["kernel"], case["stride"], case["padding"]), **TOL[dtype])

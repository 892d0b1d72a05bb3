"""Local response normalization (the paper's convention, and Caffe's alpha/size as an option).

- functional: F.local_response_norm on every backend against naive.local_response_norm,
  backward by mc.gradcheck in float64, with alpha and k near 1 as well as the paper's
  constants (alpha=1e-4 would hide a wrong window);
- backend: each kernel backend's lrn_forward/backward against the ReferenceBackend;
- kernel: the raw minicnn._host kernels against the reference.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive

from fixtures import DTYPES, MANY_EXAMPLES, TOL, host_kernel, randn, scaled

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
@given(case=st.fixed_dictionaries({
    "c": st.integers(1, 8), "size": st.sampled_from([1, 3, 5, 7]), "seed": st.integers(0, 2**16),
    "constants": st.sampled_from([(1e-4, 0.75, 2.0), (0.9, 0.75, 1.1), (1.0, 0.5, 1.0), (0.5, 1.5, 0.8)]),
    "caffe": st.booleans(),
}))
def test_local_response_norm_forward_and_backward(backend, case):
    alpha, beta, k = case["constants"]
    size = case["size"]
    x = np.random.default_rng(case["seed"]).standard_normal((2, case["c"], 3, 2))
    y = F.local_response_norm(backend.tensor(x), size, alpha, beta, k, divide_alpha_by_size=case["caffe"])
    effective_alpha = alpha / size if case["caffe"] else alpha
    backend.assert_close(y.data, naive.local_response_norm(x, size, effective_alpha, beta, k), rtol=1e-12)
    assert mc.gradcheck(lambda t: F.local_response_norm(t, size, alpha, beta, k, case["caffe"]),
                        [backend.tensor(x, True)])


def test_lrn_paper_convention_differs_from_caffe_by_alpha_over_n(backend):
    x = backend.tensor(np.random.default_rng(0).standard_normal((1, 7, 2, 2)) * 10)
    paper = F.local_response_norm(x, 5, alpha=1.0, k=1.0).numpy()
    caffe = F.local_response_norm(x, 5, alpha=5.0, k=1.0, divide_alpha_by_size=True).data
    backend.assert_close(caffe, paper, rtol=1e-12)


# --------------------------------------------------------------------------- backend, against the reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, constants", [(5, (1e-4, 0.75, 2.0)), (5, (0.9, 0.75, 1.0)), (3, (0.5, 0.75, 1.0))])
def test_lrn_matches_reference(kernel_backend, size, constants, dtype):
    alpha, beta, k = constants
    be, rng = kernel_backend, np.random.default_rng(5)
    x = randn(rng, (2, 96, 13, 13), dtype)
    y_ref, scale_ref = R.lrn_forward(x, size, dtype(alpha), dtype(beta), dtype(k))
    y, scale = be.impl.lrn_forward(be.array(x), size, alpha, beta, k)
    be.assert_close(y, y_ref, **TOL[dtype])
    be.assert_close(scale, scale_ref, **TOL[dtype])
    dy = randn(rng, x.shape, dtype)
    be.assert_close(be.impl.lrn_backward(be.array(x), y, scale, be.array(dy), size, alpha, beta, k),
                    R.lrn_backward(x, y_ref, scale_ref, dy, size, dtype(alpha), dtype(beta), dtype(k)),
                    **scaled(TOL[dtype], 10), gpu_scale=10)


# --------------------------------------------------------------------------- kernels
@given(n=st.integers(1, 3), c=st.integers(1, 9), hw=st.integers(1, 12), size=st.sampled_from([1, 3, 5, 7]),
       constants=st.sampled_from([(1e-4, 0.75, 2.0), (0.9, 0.75, 1.0), (0.5, 0.6, 1.5)]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_lrn_kernels(n, c, hw, size, constants, dtype, seed):
    # alpha near 1 as well as the paper's 1e-4: a tiny alpha would hide a wrong window
    alpha, beta, k = constants
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, c, hw, 1), dtype)
    y, scale = np.empty_like(x), np.empty_like(x)
    host_kernel("lrn_scale", dtype)(n * c, x, scale, c, hw, size, alpha, k)       # one row per plane
    host_kernel("lrn_forward", dtype)(x.size, x, scale, y, beta)                  # y = x * scale^-beta
    y_ref, scale_ref = R.lrn_forward(x, size, dtype(alpha), dtype(beta), dtype(k))
    np.testing.assert_allclose(scale, scale_ref, **TOL[dtype])
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    dy = randn(rng, x.shape, dtype)
    dx = np.empty_like(x)
    ratio = np.empty_like(x)                       # per element: dy * scale^-beta and dy * y / scale
    host_kernel("lrn_backward_terms", dtype)(x.size, y_ref, scale_ref, dy, ratio, dx, beta)
    host_kernel("lrn_backward", dtype)(n * c, x, ratio, dx, c, hw, size, alpha, beta)   # then the window sums
    expected = R.lrn_backward(x, y_ref, scale_ref, dy, size, dtype(alpha), dtype(beta), dtype(k))
    np.testing.assert_allclose(dx, expected, **scaled(TOL[dtype], 10))

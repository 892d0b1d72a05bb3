"""linear (y = x w^T + b, PyTorch's weight layout), a GEMM plus the bias kernels.

- functional: F.linear on every backend against naive.linear, backward by mc.gradcheck in float64;
- backend: each kernel backend's linear_forward/backward against the ReferenceBackend.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive

from fixtures import DTYPES, MANY_EXAMPLES, TOL, randn, scaled

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
@given(n=st.integers(1, 4), fan_in=st.integers(1, 5), fan_out=st.integers(1, 4), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear(backend, n, fan_in, fan_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_out, fan_in)), rng.standard_normal(fan_out)
    inputs = [backend.tensor(x, True), backend.tensor(w, True)] + ([backend.tensor(b, True)] if bias else [])
    backend.assert_close(F.linear(*inputs).data, naive.linear(x, w, b if bias else None), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(F.linear, inputs)


# --------------------------------------------------------------------------- backend, against the reference
@given(n=st.integers(1, 5), fin=st.integers(1, 8), fout=st.integers(1, 8), bias=st.booleans(),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_linear_matches_reference(kernel_backend, n, fin, fout, bias, dtype, seed):
    be, rng = kernel_backend, np.random.default_rng(seed)
    x, w = randn(rng, (n, fin), dtype), randn(rng, (fout, fin), dtype)
    b = randn(rng, (fout,), dtype) if bias else None
    be.assert_close(be.impl.linear_forward(be.array(x), be.array(w), be.array(b)), R.linear_forward(x, w, b),
                    **TOL[dtype])
    dy = randn(rng, (n, fout), dtype)
    for ours, ref in zip(be.impl.linear_backward(be.array(x), be.array(w), be.array(dy), True, True, True),
                         R.linear_backward(x, w, dy)):
        be.assert_close(ours, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_fc_sized_matches_reference(kernel_backend, dtype):
    be, rng = kernel_backend, np.random.default_rng(2)
    x, w, b = randn(rng, (16, 300), dtype), randn(rng, (70, 300), dtype), randn(rng, (70,), dtype)
    be.assert_close(be.impl.linear_forward(be.array(x), be.array(w), be.array(b)), R.linear_forward(x, w, b),
                    **scaled(TOL[dtype], 10), gpu_scale=10)
    dy = randn(rng, (16, 70), dtype)
    for a, r in zip(be.impl.linear_backward(be.array(x), be.array(w), be.array(dy), True, True, True),
                    R.linear_backward(x, w, dy)):
        be.assert_close(a, r, **scaled(TOL[dtype], 10), gpu_scale=10)

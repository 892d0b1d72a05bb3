"""Activations and dropout: relu / leaky_relu, sigmoid, tanh, dropout and its counter hash.

- functional: the F ops on every backend against the naive definitions, backward by
  mc.gradcheck in float64; dropout's mask is the counter hash of (seed, element index),
  the index counted from the batch's first sample in the global batch (data parallel);
- backend: each kernel backend's relu and dropout against the ReferenceBackend, bit for bit;
- kernel: the raw minicnn._host kernels (and the hash) against the reference, bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive
from minicnn import random as mc_random

from fixtures import DTYPES, MANY_EXAMPLES, host_kernel, host_module, randn

R = backends.reference_backend()


# --------------------------------------------------------------------------- functional, every backend
@given(seed=st.integers(0, 2**16), slope=st.sampled_from([0.0, 0.01, 0.2]))
def test_relu_family(backend, seed, slope):
    x = np.random.default_rng(seed).standard_normal((3, 4)) + 0.05  # keep away from the kink at 0
    x[np.abs(x) < 1e-3] = 0.5
    op = F.relu if slope == 0.0 else (lambda t: F.leaky_relu(t, slope))
    backend.assert_equal(op(backend.tensor(x)).data, naive.leaky_relu(x, slope))
    assert mc.gradcheck(op, [backend.tensor(x, True)])


@given(seed=st.integers(0, 2**16))
def test_sigmoid_and_tanh(backend, seed):
    x = np.random.default_rng(seed).standard_normal((3, 4)) * 3
    backend.assert_close(F.sigmoid(backend.tensor(x)).data, naive.sigmoid(x))
    backend.assert_close(F.tanh(backend.tensor(x)).data, naive.tanh(x))
    assert mc.gradcheck(F.sigmoid, [backend.tensor(x, True)])
    assert mc.gradcheck(F.tanh, [backend.tensor(x, True)])


def test_sigmoid_does_not_overflow(backend):
    y = F.sigmoid(backend.tensor(np.array([-1000.0, 1000.0], dtype=np.float32))).numpy()
    np.testing.assert_array_equal(y, [0.0, 1.0])
    np.testing.assert_array_equal(naive.sigmoid(np.array([-1000.0, 1000.0])), [0.0, 1.0])


@given(seed=st.integers(0, 2**32 - 1), p=st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_mask_is_the_counter_hash(backend, seed, p):
    x = np.random.default_rng(0).standard_normal((4, 5)) + 3.0
    y = F.dropout(backend.tensor(x), p, training=True, seed=seed)
    keep = np.array([naive.dropout_keep(seed, i, p) for i in range(x.size)]).reshape(x.shape)
    backend.assert_close(y.data, np.where(keep, x / (1 - p), 0.0), rtol=1e-12)
    backend.assert_close(y.data, naive.dropout(x, p, seed), rtol=1e-12)
    assert mc.gradcheck(lambda t: F.dropout(t, p, seed=seed), [backend.tensor(x, True)])


def test_dropout_keeps_one_minus_p_and_preserves_the_mean_and_eval_is_identity(backend):
    x = backend.tensor(np.ones((200, 500), dtype=np.float32))
    y = F.dropout(x, 0.5, training=True, seed=123).numpy()
    assert abs((y != 0).mean() - 0.5) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    assert F.dropout(x, 0.5, training=False) is x
    mc.manual_seed(7)
    first = F.dropout(x, 0.5).numpy()
    mc.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), first)   # same seed, same mask
    assert not np.array_equal(F.dropout(x, 0.5).numpy(), first)        # the next call draws a new mask


@given(seed=st.integers(0, 2**32 - 1), split=st.integers(1, 5))
def test_dropout_of_a_slice_of_the_batch_is_the_slice_of_the_batch_mask(backend, seed, split):
    # what a data-parallel rank holding samples split..5 of a 6-sample global batch draws:
    # the same elements of the same mask as one process holding all six
    x = np.random.default_rng(1).standard_normal((6, 3, 4)) + 3.0
    whole = F.dropout(backend.tensor(x), 0.5, seed=seed).numpy()
    with mc.random.first_sample(split):
        part = F.dropout(backend.tensor(x[split:]), 0.5, seed=seed)
        assert mc.gradcheck(lambda t: F.dropout(t, 0.5, seed=seed), [backend.tensor(x[split:], True)])
    backend.assert_equal(part.data, whole[split:])
    backend.assert_close(part.data, naive.dropout(x[split:], 0.5, seed, offset=split * 12), rtol=1e-12)
    # an explicit offset wins over the sample offset; outside the block the offset is 0 again
    backend.assert_equal(F.dropout(backend.tensor(x[split:]), 0.5, seed=seed, offset=split * 12).data, whole[split:])
    assert not np.array_equal(F.dropout(backend.tensor(x[split:]), 0.5, seed=seed).numpy(), whole[split:])


def test_dropout_offset_is_checked():
    with pytest.raises(ValueError, match="offset must be >= 0"):
        F.dropout(mc.Tensor(np.ones((2, 2))), 0.5, offset=-1)
    with pytest.raises(ValueError, match="first_sample must be >= 0"):
        with mc.random.first_sample(-2):
            pass


def test_dropout_module_follows_train_and_eval(backend):
    layer = mc.nn.Dropout(0.5)
    x = backend.tensor(np.ones((10, 10), dtype=np.float32))
    assert (layer(x).numpy() == 0).any()
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


# --------------------------------------------------------------------------- backend, against the reference
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_dropout_match_reference_bitwise(kernel_backend, dtype):
    be, rng = kernel_backend, np.random.default_rng(6)
    x, dy = randn(rng, (8, 4096), dtype), randn(rng, (8, 4096), dtype)
    for slope in (0.0, 0.1):
        be.assert_equal(be.impl.relu_forward(be.array(x), slope), R.relu_forward(x, slope))
        be.assert_equal(be.impl.relu_backward(be.array(x), be.array(dy), slope), R.relu_backward(x, dy, slope))
    for p in (0.5, 0.4):
        threshold, scale = mc_random.dropout_threshold_and_scale(p, x.dtype)
        for seed in (0, 77, 12345, 2**32 - 1):     # the same hash on every device: the very same mask
            for offset in (0, 3 * 4096, 2**32 - 5):    # a rank's first element; past 2^32 the high word counts
                be.assert_equal(be.impl.dropout_forward(be.array(x), threshold, scale, seed, offset),
                                R.dropout_forward(x, threshold, scale, seed, offset))
                be.assert_equal(be.impl.dropout_backward(be.array(dy), threshold, scale, seed, offset),
                                R.dropout_backward(dy, threshold, scale, seed, offset))


# --------------------------------------------------------------------------- kernels and the hash
@given(seed=st.integers(0, 2**32 - 1))
@MANY_EXAMPLES
def test_dropout_hash_matches_reference_bit_for_bit(seed):
    host = host_module()
    count = 300
    ours = np.array([host.dropout_hash(seed, i) for i in range(count)], dtype=np.uint32)
    np.testing.assert_array_equal(ours, mc_random.dropout_hash(seed, count))
    np.testing.assert_array_equal(ours, [naive.dropout_hash(seed, i) for i in range(count)])
    np.testing.assert_array_equal(ours[100:], mc_random.dropout_hash(seed, count - 100, offset=100))
    big = [2**32 - 1, 2**32, 2**32 + 7, 2**40 + 3, 2**63 - 1]     # the high word matters too
    np.testing.assert_array_equal([host.dropout_hash(seed, i) for i in big], [naive.dropout_hash(seed, i) for i in big])


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), slope=st.sampled_from([0.0, 0.01, 0.2]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@MANY_EXAMPLES
def test_relu_kernels_bitwise(shape, slope, dtype, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, dtype)
    x.flat[0] = 0.0                       # the subgradient at 0 is the slope
    y, dx = np.empty_like(x), np.empty_like(x)
    host_kernel("relu_forward", dtype)(x.size, x, y, slope)
    np.testing.assert_array_equal(y, R.relu_forward(x, slope))
    dy = randn(rng, shape, dtype)
    host_kernel("relu_backward", dtype)(x.size, x, dy, dx, slope)
    np.testing.assert_array_equal(dx, R.relu_backward(x, dy, slope))


@given(size=st.integers(1, 3000), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES), offset=st.sampled_from([0, 1, 4096, 2**32 - 7, 2**40 + 3]))
@MANY_EXAMPLES
def test_dropout_kernels_bitwise(size, p, seed, dtype, offset):
    rng = np.random.default_rng(seed % 2**31)
    x = randn(rng, (size,), dtype)
    threshold, scale = mc_random.dropout_threshold_and_scale(p, np.dtype(dtype))
    y = np.empty_like(x)
    host_kernel("dropout_forward", dtype)(x.size, x, y, threshold, float(scale), seed, offset)
    np.testing.assert_array_equal(y, R.dropout_forward(x, threshold, scale, seed, offset))
    dx = np.empty_like(x)
    host_kernel("dropout_backward", dtype)(x.size, x, dx, threshold, float(scale), seed, offset)
    np.testing.assert_array_equal(dx, R.dropout_backward(x, threshold, scale, seed, offset))
    # element i of a slice starting at ``offset`` is element offset + i of the whole
    keep = (mc_random.dropout_hash(seed, size, offset) >> np.uint32(8)) >= np.uint32(threshold)
    np.testing.assert_array_equal(y, np.where(keep, x * scale, dtype(0)))

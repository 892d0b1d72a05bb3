"""Batch normalization: F.batch_norm and nn.BatchNorm1d / BatchNorm2d.

- functional, every backend: forward against naive.batch_norm (training: batch
  statistics; eval: running ones), backward by mc.gradcheck in float64, shapes drawn by
  hypothesis; the running statistics against naive.running_statistics;
- backend: each kernel backend's batch_norm methods against the ReferenceBackend;
- the layers: buffers named as PyTorch's, in state_dict and checkpoints, modes, bad input;
- PyTorch: a few training steps and eval of torch.nn.BatchNorm1d/2d, where torch is installed.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, naive, nn

from fixtures import TOL, randn

R = backends.reference_backend()

shapes = st.sampled_from([(4, 3), (2, 3, 5), (3, 2, 3, 4), (2, 4, 1, 1), (1, 2, 3, 3), (5, 1, 2, 2)])


def _channel_vectors(rng, c):
    return rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.5


# --------------------------------------------------------------------------- functional, every backend
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_batch_norm_training_forward_and_backward(backend, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    weight, bias, _, _ = _channel_vectors(rng, shape[1])
    y = F.batch_norm(backend.tensor(x), None, None, backend.tensor(weight), backend.tensor(bias), training=True)
    backend.assert_close(y.data, naive.batch_norm(x, weight, bias), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t, w, b: F.batch_norm(t, None, None, w, b, training=True),
                        [backend.tensor(x, True), backend.tensor(weight, True), backend.tensor(bias, True)])


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_batch_norm_eval_forward_and_backward(backend, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    weight, bias, mean, var = _channel_vectors(rng, shape[1])
    rm, rv = backend.tensor(mean), backend.tensor(var)
    y = F.batch_norm(backend.tensor(x), rm, rv, backend.tensor(weight), backend.tensor(bias), training=False)
    backend.assert_close(y.data, naive.batch_norm(x, weight, bias, mean, var), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t, w, b: F.batch_norm(t, rm, rv, w, b, training=False),
                        [backend.tensor(x, True), backend.tensor(weight, True), backend.tensor(bias, True)])
    backend.assert_equal(rm.data, mean)                     # eval never changes the running statistics


def test_batch_norm_without_affine_parameters(backend):
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    y = F.batch_norm(backend.tensor(x), None, None, training=True, eps=1e-3)
    backend.assert_close(y.data, naive.batch_norm(x, eps=1e-3), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t: F.batch_norm(t, None, None, training=True), [backend.tensor(x, True)])


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_statistics_follow_the_batches(backend, momentum):
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((4, 3, 2, 3)) * (i + 1) + i for i in range(3)]
    layer = nn.BatchNorm2d(3, momentum=momentum).double().to(backend.device)
    for x in batches:
        layer(backend.tensor(x))
    mean, var = naive.running_statistics(batches, momentum)
    backend.assert_close(layer.running_mean.data, mean, rtol=1e-12, atol=1e-12)
    backend.assert_close(layer.running_var.data, var, rtol=1e-12, atol=1e-12)
    assert int(layer.num_batches_tracked.numpy()) == 3
    layer.eval()                                          # eval normalises with what training gathered
    x = batches[0]
    backend.assert_close(layer(backend.tensor(x)).data, naive.batch_norm(x, mean=mean, var=var),
                         rtol=1e-10, atol=1e-12)


def test_float32_statistics_of_a_channel_far_from_zero(backend):
    # mean 1000, std 1: a one-pass E[x^2] - E[x]^2 in float32 would lose every digit of the variance
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((16, 2, 8, 8)) + 1000.0).astype(np.float32)
    y = F.batch_norm(backend.tensor(x), None, None, training=True)
    expected = naive.batch_norm(x.astype(np.float64))
    backend.assert_close(y.data, expected, rtol=0, atol=2e-3)


# --------------------------------------------------------------------------- backend, against the reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3, 7), (2, 64, 9), (8, 4, 1)])
def test_batch_norm_methods_match_reference(kernel_backend, dtype, shape):
    be, rng = kernel_backend, np.random.default_rng(3)
    x, dy = randn(rng, shape, dtype) * 2 + 0.5, randn(rng, shape, dtype)
    w, b = randn(rng, (shape[1],), dtype), randn(rng, (shape[1],), dtype)
    mean_ref, var_ref = R.batch_norm_statistics(x)
    mean, var = be.impl.batch_norm_statistics(be.array(x))
    tol = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: TOL[np.float64]}[dtype]
    be.assert_close(mean, mean_ref, **tol)
    be.assert_close(var, var_ref, **tol)
    y = be.impl.batch_norm_forward(be.array(x), be.array(mean_ref), be.array(var_ref), be.array(w), be.array(b), 1e-5)
    be.assert_close(y, R.batch_norm_forward(x, mean_ref, var_ref, w, b, dtype(1e-5)), **tol)
    for batch_statistics in (True, False):
        ours = be.impl.batch_norm_backward(be.array(x), be.array(dy), be.array(mean_ref), be.array(var_ref),
                                           be.array(w), 1e-5, batch_statistics)
        ref = R.batch_norm_backward(x, dy, mean_ref, var_ref, w, dtype(1e-5), batch_statistics)
        for a, e in zip(ours, ref):
            be.assert_close(a, e, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


# --------------------------------------------------------------------------- the layers
def test_buffers_are_named_as_pytorch_and_saved(tmp_path):
    layer = nn.BatchNorm2d(3)
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    layer(mc.Tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)))
    state = layer.state_dict()
    assert state["num_batches_tracked"].dtype == np.int64 and state["num_batches_tracked"].shape == ()
    mc.save(tmp_path / "bn.npz", layer)
    fresh = nn.BatchNorm2d(3)
    mc.load(tmp_path / "bn.npz", fresh)
    for key, value in state.items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value)
    assert not np.allclose(fresh.running_mean.numpy(), 0)
    fresh.double()
    assert fresh.running_var.dtype == np.float64 and fresh.num_batches_tracked.dtype == np.int64


def test_options_affine_and_track_running_stats():
    layer = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    assert layer.parameters() == [] and list(layer.state_dict()) == []
    x = np.random.default_rng(0).standard_normal((6, 4))
    layer.eval()                            # no running statistics: the batch's, even in eval
    np.testing.assert_allclose(layer(mc.Tensor(x)).numpy(), naive.batch_norm(x), rtol=1e-10, atol=1e-12)
    assert "affine=False" in repr(layer)


def test_batchnorm1d_takes_2d_and_3d_inputs():
    rng = np.random.default_rng(4)
    layer = nn.BatchNorm1d(3).double()
    for shape in ((5, 3), (2, 3, 4)):
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(layer(mc.Tensor(x)).numpy(), naive.batch_norm(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.BatchNorm2d(3)(mc.Tensor(np.ones((2, 4, 3, 3), np.float32))), ValueError,
     r"batch_norm: input has 4 channels .* running_mean has shape \(3,\)"),
    (lambda: nn.BatchNorm2d(3)(mc.Tensor(np.ones((2, 3, 3), np.float32))), ValueError,
     r"BatchNorm2d: expected input of shape \(N, C, H, W\), got shape \(2, 3, 3\)"),
    (lambda: nn.BatchNorm1d(3)(mc.Tensor(np.ones((2, 3, 3, 3), np.float32))), ValueError,
     r"BatchNorm1d: expected input of shape \(N, C\) or \(N, C, L\)"),
    (lambda: nn.BatchNorm1d(3)(mc.Tensor(np.ones((1, 3), np.float32))), ValueError,
     r"expected more than 1 value per channel when training, got input of shape \(1, 3\)"),
    (lambda: nn.BatchNorm2d(3)(mc.Tensor(np.ones((1, 3, 1, 1), np.float32))), ValueError,
     r"more than 1 value per channel"),
    (lambda: nn.BatchNorm2d(0), ValueError, r"BatchNorm2d: num_features must be a positive int"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError, r"BatchNorm2d: momentum must be in \[0, 1\] or None"),
    (lambda: nn.BatchNorm2d(3, eps=0), ValueError, r"BatchNorm2d: eps must be > 0"),
    (lambda: F.batch_norm(mc.Tensor(np.ones((2, 3), np.float32)), None, None), ValueError,
     r"evaluation \(training=False\) needs running_mean and running_var"),
    (lambda: F.batch_norm(mc.Tensor(np.ones((2, 3), np.float32)), mc.Tensor(np.zeros(3)), mc.Tensor(np.ones(3))),
     TypeError, r"running_mean has dtype float64 but input has dtype float32"),
    (lambda: F.batch_norm(mc.Tensor(np.ones((2, 3), np.float32)), np.zeros(3, np.float32), None), TypeError,
     r"running_mean must be a minicnn Tensor"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_batch_of_one_is_fine_in_eval_mode():
    layer = nn.BatchNorm1d(3).eval()
    assert layer(mc.Tensor(np.ones((1, 3), np.float32))).shape == (1, 3)
    # and for BatchNorm2d a single image has H*W values per channel: training works (as PyTorch)
    assert nn.BatchNorm2d(3)(mc.Tensor(np.random.default_rng(0).random((1, 3, 2, 2)).astype(np.float32))).shape == (1, 3, 2, 2)


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("kind, shape", [("2d", (4, 3, 5, 6)), ("1d", (8, 5)), ("1d", (3, 5, 4))])
@pytest.mark.parametrize("options", [dict(), dict(momentum=None), dict(affine=False), dict(momentum=0.3, eps=1e-3),
                                     dict(track_running_stats=False)])
def test_matches_pytorch(kind, shape, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    ours = (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(shape[1], **options).double()
    theirs = (torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d)(shape[1], **options).double()
    if ours.affine:
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(rng.standard_normal(shape[1])))
            theirs.bias.copy_(torch.tensor(rng.standard_normal(shape[1])))
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1) + step
        g = rng.standard_normal(shape)
        xt, xm = torch.tensor(x, requires_grad=True), mc.Tensor(x, requires_grad=True)
        yt, ym = theirs(xt), ours(xm)
        yt.backward(torch.tensor(g))
        ym.backward(g)
        np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        if ours.affine:
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
            ours.zero_grad()
            theirs.zero_grad()
    theirs_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_state)
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value, theirs_state[key].numpy(), rtol=1e-12, err_msg=key)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours(mc.Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)

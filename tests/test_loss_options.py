"""Losses with PyTorch's options: cross_entropy (weight, ignore_index, reduction, label_smoothing,
(N, C, d1, ...) inputs), nll_loss, mse_loss, and their layers.

- functional, every backend: against naive' loops, backward by mc.gradcheck in float64,
  cases drawn by hypothesis;
- backend: each kernel backend's nll_loss and squared_error methods against the ReferenceBackend;
- PyTorch: torch.nn.functional's losses over the options, where torch is installed.
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


@st.composite
def classification_case(draw):
    """Scores (N, C) or (N, C, d1[, d2]), labels (some ignored), options."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    extra = draw(st.sampled_from([(), (3,), (2, 3)]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ignore_index = draw(st.sampled_from([-100, 1]))
    labels = rng.integers(0, c, (n,) + extra)
    labels.flat[0] = ignore_index if draw(st.booleans()) else labels.flat[0]
    if labels.size > 1 and ignore_index != -100 and (labels != ignore_index).sum() == 0:
        labels.flat[-1] = 0
    return dict(scores=rng.standard_normal((n, c) + extra) * 2, labels=labels, ignore_index=ignore_index,
                weight=rng.random(c) + 0.5 if draw(st.booleans()) else None,
                reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.25])))


def _counted_anything(case):
    return bool((case["labels"] != case["ignore_index"]).any())


# --------------------------------------------------------------------------- functional, every backend
@given(case=classification_case())
def test_cross_entropy_options(backend, case):
    if case["reduction"] == "mean" and not _counted_anything(case):
        return                                           # 0/0: tested on its own below
    options = {k: case[k] for k in ("weight", "ignore_index", "reduction", "label_smoothing")}
    loss = F.cross_entropy(backend.tensor(case["scores"]), case["labels"], **options)
    backend.assert_close(loss.data, naive.cross_entropy(case["scores"], case["labels"], **options),
                         rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda z: F.cross_entropy(z, case["labels"], **options), [backend.tensor(case["scores"], True)])


@given(case=classification_case())
def test_nll_loss_options(backend, case):
    if case["reduction"] == "mean" and not _counted_anything(case):
        return
    options = {k: case[k] for k in ("weight", "ignore_index", "reduction")}
    log_probs = case["scores"]                  # nll_loss takes any scores: it only picks and weighs them
    loss = F.nll_loss(backend.tensor(log_probs), case["labels"], **options)
    backend.assert_close(loss.data, naive.nll_loss(log_probs, case["labels"], **options), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda q: F.nll_loss(q, case["labels"], **options), [backend.tensor(log_probs, True)])


@given(shape=st.sampled_from([(3,), (2, 4), (2, 3, 2, 2)]), reduction=st.sampled_from(["mean", "sum", "none"]),
       seed=st.integers(0, 2**16))
def test_mse_loss(backend, shape, reduction, seed):
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal(shape), rng.standard_normal(shape)
    loss = F.mse_loss(backend.tensor(x), backend.tensor(t), reduction)
    backend.assert_close(loss.data, naive.mse_loss(x, t, reduction), rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [backend.tensor(x, True), backend.tensor(t, True)])
    backend.assert_close(F.mse_loss(backend.tensor(x), t).data, naive.mse_loss(x, t), rtol=1e-12)   # array target


def test_the_fused_path_and_the_general_path_agree(backend):
    rng = np.random.default_rng(1)
    z, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    fused = F.cross_entropy(backend.tensor(z, True), labels)
    general = F.cross_entropy(backend.tensor(z, True), labels, weight=np.ones(5))   # weights of 1: the same loss
    assert type(fused.grad_fn).__name__ == "CrossEntropy" and type(general.grad_fn).__name__ == "NLLLoss"
    backend.assert_close(fused.data, backend.numpy(general.data), rtol=1e-12)


def test_everything_ignored_gives_nan_as_pytorch(backend):
    z = backend.tensor(np.zeros((2, 3)), True)
    loss = F.cross_entropy(z, np.array([-100, -100]))
    assert np.isnan(float(backend.numpy(loss.data)))
    assert float(backend.numpy(F.cross_entropy(z, np.array([-100, -100]), reduction="sum").data)) == 0.0


# --------------------------------------------------------------------------- backend, against the reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_methods_match_reference(kernel_backend, dtype):
    be, rng = kernel_backend, np.random.default_rng(2)
    log_probs, weight = randn(rng, (3, 4, 5), dtype), (rng.random(4) + 0.5).astype(dtype)
    labels = rng.integers(0, 4, (3, 5))
    labels[0, 0] = labels[2, 3] = -100
    loss, counted = be.impl.nll_loss_forward(be.array(log_probs), be.array(labels), be.array(weight), -100)
    loss_ref, counted_ref = R.nll_loss_forward(log_probs, labels, weight, -100)
    be.assert_equal(loss, loss_ref)                  # one product per sample: exact
    be.assert_equal(counted, counted_ref)
    dloss = randn(rng, (3, 5), dtype)
    be.assert_equal(be.impl.nll_loss_backward(be.array(labels), be.array(weight), -100, be.array(dloss), 4),
                    R.nll_loss_backward(labels, weight, -100, dloss, 4))
    x, t, d = randn(rng, (7, 3), dtype), randn(rng, (7, 3), dtype), randn(rng, (7, 3), dtype)
    be.assert_equal(be.impl.squared_error_forward(be.array(x), be.array(t)), R.squared_error_forward(x, t))
    be.assert_close(be.impl.squared_error_backward(be.array(x), be.array(t), be.array(d)),
                    R.squared_error_backward(x, t, d), **TOL[dtype])


def test_nll_kernel_gives_nan_for_a_bad_label_not_a_bad_read(kernel_backend):
    be = kernel_backend
    loss, _ = be.impl.nll_loss_forward(be.array(np.zeros((2, 3, 1))), be.array(np.array([[1], [7]])),
                                       be.array(np.ones(3)), -100)
    loss = be.numpy(loss)
    assert np.isfinite(loss[0, 0]) and np.isnan(loss[1, 0])


# --------------------------------------------------------------------------- layers and bad input
def test_loss_layers():
    rng = np.random.default_rng(3)
    z, labels, w = rng.standard_normal((4, 3, 2)), rng.integers(0, 3, (4, 2)), rng.random(3) + 0.5
    layer = nn.CrossEntropyLoss(weight=w, ignore_index=0, reduction="sum", label_smoothing=0.1)
    np.testing.assert_allclose(layer(mc.Tensor(z), labels).numpy(),
                               naive.cross_entropy(z, labels, w, 0, "sum", 0.1), rtol=1e-12)
    np.testing.assert_allclose(nn.NLLLoss(weight=w)(mc.Tensor(z), labels).numpy(),
                               naive.nll_loss(z, labels, w), rtol=1e-12)
    np.testing.assert_allclose(nn.MSELoss("sum")(mc.Tensor(z), z * 2).numpy(), (z ** 2).sum(), rtol=1e-12)


Z = mc.Tensor(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.cross_entropy(Z, np.array([0, 3])), ValueError,
     r"cross_entropy: labels must be in \[0, 2\], got values from 0 to 3 \(a label equal to ignore_index=-100 "
     r"is skipped\)"),
    (lambda: F.cross_entropy(Z, np.array([0, -1])), ValueError, r"labels must be in \[0, 2\].*from -1 to 0"),
    (lambda: F.cross_entropy(Z, np.array([0, 1]), ignore_index=1.5), TypeError, r"ignore_index must be an int"),
    (lambda: F.cross_entropy(Z, np.array([0, 1]), weight=np.ones(4)), ValueError,
     r"weight must hold one number per class, shape \(3,\), got shape \(4,\)"),
    (lambda: F.cross_entropy(Z, np.array([0, 1]), reduction="average"), ValueError,
     r"reduction must be one of \('mean', 'sum', 'none'\), got 'average'"),
    (lambda: F.cross_entropy(Z, np.array([0, 1]), label_smoothing=1.5), ValueError,
     r"label_smoothing must be in \[0, 1\], got 1.5"),
    (lambda: F.cross_entropy(Z, np.array([[0, 1]])), ValueError,
     r"labels must have shape \(2,\) to match the scores \(2, 3\)"),
    (lambda: F.cross_entropy(mc.Tensor(np.zeros((2, 3, 4), np.float32)), np.zeros((2, 3), np.int64)), ValueError,
     r"labels must have shape \(2, 4\)"),
    (lambda: F.cross_entropy(Z, np.array([0.0, 1.0])), TypeError, r"labels must be integer class ids"),
    (lambda: F.nll_loss(mc.Tensor(np.zeros(3, np.float32)), np.array([0])), ValueError,
     r"nll_loss: input must be \(N, classes\) or \(N, classes, d1, ...\)"),
    (lambda: F.mse_loss(Z, np.zeros((3, 2))), ValueError, r"mse_loss: target must have the input's shape \(2, 3\)"),
    (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, r"CrossEntropyLoss: reduction must be one of"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("extra", [(), (3, 2)])
@pytest.mark.parametrize("options", [
    dict(), dict(weight=True), dict(ignore_index=2), dict(reduction="sum"), dict(reduction="none", weight=True),
    dict(label_smoothing=0.2), dict(label_smoothing=0.3, weight=True, ignore_index=2),
    dict(label_smoothing=0.1, reduction="none", weight=True), dict(label_smoothing=0.1, reduction="sum", weight=True),
])
def test_cross_entropy_and_nll_match_pytorch(extra, options):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 4) + extra)
    labels = rng.integers(0, 4, (5,) + extra)
    labels.flat[0] = 2
    weight = rng.random(4) + 0.5
    ours = dict(options, weight=weight if options.get("weight") else None)
    theirs = dict(options, weight=torch.tensor(weight) if options.get("weight") else None)
    for our_fn, their_fn, inputs in ((F.cross_entropy, tf.cross_entropy, z),
                                     (F.nll_loss, tf.nll_loss, np.log(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)))):
        if our_fn is F.nll_loss and "label_smoothing" in options:
            continue
        zt, zm = torch.tensor(inputs, requires_grad=True), mc.Tensor(inputs, requires_grad=True)
        lt, lm = their_fn(zt, torch.tensor(labels), **theirs), our_fn(zm, labels, **ours)
        np.testing.assert_allclose(lm.numpy(), lt.detach().numpy(), rtol=1e-12, atol=1e-14)
        g = rng.standard_normal(lt.shape)
        lt.backward(torch.tensor(g))
        lm.backward(g)
        np.testing.assert_allclose(zm.grad, zt.grad.numpy(), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_pytorch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    xt, tt = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    xm, tm = mc.Tensor(x, requires_grad=True), mc.Tensor(t, requires_grad=True)
    lt, lm = torch.nn.functional.mse_loss(xt, tt, reduction=reduction), F.mse_loss(xm, tm, reduction)
    np.testing.assert_allclose(lm.numpy(), lt.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(lt.shape)
    lt.backward(torch.tensor(g))
    lm.backward(g)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tm.grad, tt.grad.numpy(), rtol=1e-12)

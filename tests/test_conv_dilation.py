"""conv2d with dilation and asymmetric padding (top, bottom, left, right), on every backend
(the ``backend`` fixture): forward against naive.conv2d, backward by mc.gradcheck in float64,
both over shapes drawn by hypothesis, PyTorch's numbers where torch is installed, and the
argument checks."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicnn as mc
import minicnn.functional as F
from minicnn import naive


@st.composite
def dilated_case(draw):
    """Any kernel, stride, dilation and padding (also more than half the kernel) whose window fits."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(4))
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    h = draw(st.integers(max(1, span_h - padding[0] - padding[1]), span_h + 4))
    w = draw(st.integers(max(1, span_w - padding[2] - padding[3]), span_w + 4))
    groups = draw(st.sampled_from([1, 2]))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)), o=groups * draw(st.integers(1, 2)),
                kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
                dilation=dilation, groups=groups, hw=(h, w), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"]) + case["hw"])
    w = rng.standard_normal((case["o"], case["c"] // case["groups"]) + case["kernel"])
    b = rng.standard_normal(case["o"]) if case["bias"] else None
    return x, w, b


def options(case):
    return dict(stride=case["stride"], padding=case["padding"], groups=case["groups"], dilation=case["dilation"])


def loops(x, w, b, case):
    return naive.conv2d(x, w, b, case["stride"], case["padding"], case["groups"], case["dilation"])


@given(case=dilated_case())
def test_forward_against_the_loops_and_backward_by_gradcheck(backend, case):
    x, w, b = arrays(case)
    y = F.conv2d(backend.tensor(x), backend.tensor(w), None if b is None else backend.tensor(b), **options(case))
    backend.assert_close(y.data, loops(x, w, b, case), rtol=1e-12, atol=1e-12)
    inputs = [backend.tensor(x, True), backend.tensor(w, True)] + ([backend.tensor(b, True)] if b is not None else [])
    assert mc.gradcheck(lambda *t: F.conv2d(*t, **options(case)), inputs)


@given(case=dilated_case())
def test_float32_matches_float64(backend, case):
    x, w, b = arrays(case)
    f32 = lambda a: None if a is None else backend.tensor(a.astype(np.float32))  # noqa: E731
    y = F.conv2d(f32(x), f32(w), f32(b), **options(case))
    assert y.dtype == np.float32
    backend.assert_close(y.data, loops(x, w, b, case), rtol=1e-4, atol=1e-4)


def test_padding_as_int_pair_or_four_ints_means_the_same(backend):
    rng = np.random.default_rng(1)
    x, w = backend.tensor(rng.standard_normal((1, 2, 6, 5))), backend.tensor(rng.standard_normal((3, 2, 3, 3)))
    as_int = F.conv2d(x, w, padding=2).numpy()
    np.testing.assert_array_equal(as_int, F.conv2d(x, w, padding=(2, 2)).numpy())
    np.testing.assert_array_equal(as_int, F.conv2d(x, w, padding=(2, 2, 2, 2)).numpy())
    pair = F.conv2d(x, w, padding=(1, 2)).numpy()
    np.testing.assert_array_equal(pair, F.conv2d(x, w, padding=[1, 1, 2, 2]).numpy())
    # asymmetric: one more row on top than at the bottom shifts the output down by one row
    top = F.conv2d(x, w, padding=(1, 0, 1, 1)).numpy()
    assert top.shape == (1, 3, 5, 5)
    np.testing.assert_allclose(top[:, :, 1:], F.conv2d(x, w, padding=(0, 0, 1, 1)).numpy(), rtol=1e-13)


def test_nn_conv2d_takes_dilation():
    layer = mc.nn.Conv2d(2, 4, 3, padding=(2, 2, 1, 1), dilation=2)
    y = layer(mc.Tensor(np.zeros((1, 2, 9, 9), np.float32)))
    assert y.shape == (1, 4, 9, 7)           # (9 + 4 - 5) // 1 + 1, (9 + 2 - 5) // 1 + 1
    assert "dilation=2" in repr(layer)
    assert "dilation" not in repr(mc.nn.Conv2d(2, 4, 3))


# --------------------------------------------------------------------------- PyTorch
@given(case=dilated_case())
def test_against_pytorch(backend, case):
    """torch's conv2d pads symmetrically: asymmetric cases are padded in NumPy first."""
    torch = pytest.importorskip("torch")
    x, w, b = arrays(case)
    top, bottom, left, right = case["padding"]
    padded = torch.tensor(np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))), requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), None if b is None else torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv2d(padded, wt, bt, stride=case["stride"], dilation=case["dilation"],
                                    groups=case["groups"])
    dy = np.random.default_rng(case["seed"] + 1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))

    xm, wm = backend.tensor(x, True), backend.tensor(w, True)
    bm = None if b is None else backend.tensor(b, True)
    y = F.conv2d(xm, wm, bm, **options(case))
    backend.assert_close(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    y.backward(backend.array(dy))
    h, wd = case["hw"]
    backend.assert_close(xm.grad, padded.grad.numpy()[:, :, top:top + h, left:left + wd], rtol=1e-10, atol=1e-10)
    backend.assert_close(wm.grad, wt.grad.numpy(), rtol=1e-10, atol=1e-10)
    if b is not None:
        backend.assert_close(bm.grad, bt.grad.numpy(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- bad input
def test_bad_dilation_and_padding_are_named():
    x, w = mc.Tensor(np.zeros((1, 1, 5, 5), np.float32)), mc.Tensor(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: dilation must be >= 1, got 0"):
        F.conv2d(x, w, dilation=0)
    with pytest.raises(ValueError, match=r"conv2d: dilation must be >= 1, got \(1, -2\)"):
        F.conv2d(x, w, dilation=(1, -2))
    with pytest.raises(TypeError, match=r"conv2d: dilation must be an int or a pair of ints, got 1.5"):
        F.conv2d(x, w, dilation=1.5)
    with pytest.raises(TypeError, match=r"conv2d: padding must be an int, a pair, a \(top, bottom, left, right\) "
                                        r"tuple or one of \('same', 'valid'\), got \(1, 2, 3\)"):
        F.conv2d(x, w, padding=(1, 2, 3))
    with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0, got \(0, 0, -1, 0\)"):
        F.conv2d(x, w, padding=(0, 0, -1, 0))
    with pytest.raises(ValueError, match=r"conv2d: kernel size \(3, 3\) with dilation \(3, 3\) spans \(7, 7\), "
                                         r"which is larger than the padded input \(6, 5\)"):
        F.conv2d(x, w, dilation=3, padding=(1, 0, 0, 0))
    with pytest.raises(ValueError, match=r"Conv2d: dilation must be >= 1, got 0"):
        mc.nn.Conv2d(1, 1, 3, dilation=0)
    with pytest.raises(ValueError, match=r"Conv2d: padding must be an int, a pair"):
        mc.nn.Conv2d(1, 1, 3, padding="left")

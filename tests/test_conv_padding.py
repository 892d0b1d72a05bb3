"""conv2d's padding="same" / "valid" and (top, bottom, left, right) padding: against naive.conv2d
on every backend, backward by mc.gradcheck in float64, against PyTorch where torch is installed,
and the errors for what is refused (strided "same", padding strings other than the two).
Dilation and asymmetric padding in general: tests/test_conv_dilation.py."""

import warnings

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import naive, nn
from minicnn.shapes import same_padding


@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5), (1, 3)])
def test_same_keeps_the_size_with_odd_kernels(backend, kernel):
    rng = np.random.default_rng(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, kh, kw)), rng.standard_normal(4)
    y = F.conv2d(backend.tensor(x), backend.tensor(w), backend.tensor(b), padding="same")
    assert y.shape == (2, 4, 6, 5)
    backend.assert_close(y.data, naive.conv2d(x, w, b, 1, (kh // 2, kw // 2)), rtol=1e-10, atol=1e-12)
    assert mc.gradcheck(lambda t, u: F.conv2d(t, u, padding="same"), [backend.tensor(x, True), backend.tensor(w, True)])


def test_valid_and_symmetric_four_tuples(backend):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, 3, 3))
    backend.assert_close(F.conv2d(backend.tensor(x), backend.tensor(w), padding="valid").data,
                         naive.conv2d(x, w, None, 1, 0), rtol=1e-10, atol=1e-12)
    backend.assert_close(F.conv2d(backend.tensor(x), backend.tensor(w), stride=2, padding=(1, 1, 2, 2)).data,
                         naive.conv2d(x, w, None, 2, (1, 2)), rtol=1e-10, atol=1e-12)


def test_the_layer_takes_the_strings():
    layer = nn.Conv2d(3, 8, 3, padding="same")
    assert layer(mc.Tensor(np.zeros((1, 3, 9, 7), np.float32))).shape == (1, 8, 9, 7)
    assert "padding=same" in repr(layer)
    assert nn.Conv2d(3, 8, 3, padding="valid")(mc.Tensor(np.zeros((1, 3, 9, 7), np.float32))).shape == (1, 8, 7, 5)


def test_same_padding_rule():
    # PyTorch's: total = dilation * (kernel - 1), the odd one at the end; with a stride, ONNX's SAME_UPPER
    assert same_padding(10, 3) == (1, 1)
    assert same_padding(10, 4) == (1, 2)
    assert same_padding(10, 3, dilation=2) == (2, 2)
    assert same_padding(10, 2, dilation=3) == (1, 2)
    assert same_padding(7, 3, stride=2) == (1, 1)


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.conv2d(mc.Tensor(np.ones((1, 1, 5, 5))), mc.Tensor(np.ones((1, 1, 3, 3))), stride=2, padding="same"),
     ValueError, r"conv2d: padding='same' needs stride 1, got stride \(2, 2\)"),
    (lambda: nn.Conv2d(1, 1, 3, stride=(1, 2), padding="same"), ValueError, r"Conv2d: padding='same' needs stride 1"),
    (lambda: F.conv2d(mc.Tensor(np.ones((1, 1, 5, 5))), mc.Tensor(np.ones((1, 1, 3, 3))), padding="full"),
     ValueError, r"conv2d: padding must be .* one of \('same', 'valid'\), got 'full'"),
    (lambda: F.conv2d(mc.Tensor(np.ones((1, 1, 5, 5))), mc.Tensor(np.ones((1, 1, 3, 3))), padding=(0, 0, -1, 0)),
     ValueError, r"conv2d: padding must be >= 0"),
])
def test_bad_padding(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_same_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 5, 3))
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same").numpy()
    np.testing.assert_allclose(F.conv2d(mc.Tensor(x), mc.Tensor(w), padding="same").numpy(), expected, rtol=1e-10)


def test_same_with_an_even_kernel_pads_one_more_at_the_end(backend):
    # "same" with a 4x4 kernel pads (1, 2, 1, 2): the odd row and column at the end, as PyTorch
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 4, 4))
    y = F.conv2d(backend.tensor(x), backend.tensor(w), padding="same")
    assert y.shape == (1, 3, 6, 5)
    backend.assert_close(y.data, naive.conv2d(x, w, None, 1, (1, 2, 1, 2)), rtol=1e-10, atol=1e-12)
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():       # torch says it pads a copy of the input for this case
        warnings.simplefilter("ignore", UserWarning)
        expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same").numpy()
    backend.assert_close(y.data, expected, rtol=1e-10, atol=1e-12)
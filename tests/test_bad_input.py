"""Every op checks its arguments before computing: each bad input gets a clear error."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F


def f32(*shape):
    return mc.Tensor(np.ones(shape, dtype=np.float32))


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.conv2d(f32(3, 8, 8), f32(4, 3, 3, 3)), ValueError, r"input must be 4-D .*\(3, 8, 8\)"),
    (lambda: F.conv2d(f32(1, 3, 8, 8), f32(4, 2, 3, 3)), ValueError, r"expects 2 input channels.*input has 3"),
    (lambda: F.conv2d(f32(1, 3, 8, 8), f32(4, 1, 3, 3), groups=2), ValueError, r"groups=2 must divide.*\(3\)"),
    (lambda: F.conv2d(f32(1, 4, 8, 8), f32(3, 2, 3, 3), groups=2), ValueError, r"output channels \(3\)"),
    (lambda: F.conv2d(f32(1, 3, 4, 4), f32(4, 3, 7, 7), padding=1), ValueError, r"kernel size \(7, 7\).*\(6, 6\)"),
    (lambda: F.conv2d(f32(1, 3, 8, 8), f32(4, 3, 3, 3), stride=0), ValueError, r"stride must be >= 1, got 0"),
    (lambda: F.conv2d(f32(1, 3, 8, 8), f32(4, 3, 3, 3), padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: F.conv2d(f32(1, 3, 8, 8), f32(4, 3, 3, 3), f32(5)), ValueError, r"bias must have shape \(4,\)"),
    (lambda: F.conv2d(mc.Tensor(np.ones((1, 3, 8, 8), dtype=np.int32)), f32(4, 3, 3, 3)), TypeError,
     r"input must be a floating point tensor.*int32"),
    (lambda: F.conv2d(mc.Tensor(np.ones((1, 3, 8, 8))), f32(4, 3, 3, 3)), TypeError, r"weight has dtype float32"),
    (lambda: F.conv2d(np.ones((1, 3, 8, 8)), f32(4, 3, 3, 3)), TypeError, r"input must be a minicnn Tensor"),
    (lambda: F.max_pool2d(f32(1, 1, 2, 2), 3), ValueError, r"kernel size \(3, 3\) is larger"),
    (lambda: F.max_pool2d(f32(1, 1, 8, 8), 3, stride=-2), ValueError, r"stride must be >= 1"),
    (lambda: F.max_pool2d(f32(8, 8), 2), ValueError, r"input must be 4-D"),
    (lambda: F.avg_pool2d(f32(1, 1, 8, 8), 2, padding=2, count_include_pad=False), ValueError,
     r"padding .* must be smaller than the kernel"),
    (lambda: F.local_response_norm(f32(1, 4, 2, 2), size=4), ValueError, r"size must be a positive odd int.*4"),
    (lambda: F.local_response_norm(f32(1, 4, 2, 2), k=0.0), ValueError, r"k > 0"),
    (lambda: F.linear(f32(2, 5), f32(3, 4)), ValueError, r"expects 4 input features, input has 5"),
    (lambda: F.linear(f32(2, 5, 1), f32(3, 5)), ValueError, r"input must be 2-D"),
    (lambda: F.dropout(f32(2, 2), p=1.5), ValueError, r"p must be in \[0, 1\], got 1.5"),
    (lambda: F.cross_entropy(f32(2, 3), np.array([0, 3])), ValueError, r"labels must be in \[0, 2\].*0 to 3"),
    (lambda: F.cross_entropy(f32(2, 3), np.array([0, -1])), ValueError, r"labels must be in \[0, 2\]"),
    (lambda: F.cross_entropy(f32(2, 3), np.array([0.0, 1.0])), TypeError, r"labels must be integer"),
    (lambda: F.cross_entropy(f32(2, 3), np.array([0, 1, 2])), ValueError, r"labels must have shape \(2,\)"),
    (lambda: F.cross_entropy(mc.Tensor(np.ones((2, 3), dtype=np.int64)), np.array([0, 1])), TypeError,
     r"floating point"),
    (lambda: F.binary_cross_entropy_with_logits(f32(2, 1), np.ones((2,))), ValueError, r"targets must have"),
    (lambda: F.binary_cross_entropy_with_logits(f32(2), np.array([0.0, 2.0])), ValueError, r"\[0, 1\]"),
    (lambda: F.softmax(f32(2, 3), axis=2), ValueError, r"axis 2 is out of range"),
    # no GPU: moving to cuda fails clearly; with one: mixing devices in an op fails clearly
    (lambda: f32(2) + mc.Tensor(np.ones(2, dtype=np.float32)).to("cuda"), (RuntimeError, ValueError), r"cuda"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()

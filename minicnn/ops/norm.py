"""Normalization: local_response_norm (the paper's LRN)."""

import numpy as np

from .. import backends
from ..autograd import Function
from . import checks


def lrn_hyperparameters(op, size, alpha, beta, k):
    """size (odd), alpha, beta, k checked; shared with nn.LocalResponseNorm."""
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"{op}: size must be a positive odd int (a window centred on each channel), got {size!r}")
    alpha, beta, k = (checks.number(op, name, v) for name, v in (("alpha", alpha), ("beta", beta), ("k", k)))
    if k <= 0 or alpha < 0:
        raise ValueError(f"{op}: need k > 0 and alpha >= 0, got k={k}, alpha={alpha}")
    return int(size), alpha, beta, k


class LocalResponseNorm(Function):
    """b[c] = a[c] / scale[c]^beta, scale[c] = k + alpha * sum of a[c']^2 over the channels c' near c."""

    @staticmethod
    def check(x, size, alpha, beta, k, divide_alpha_by_size):
        op = "local_response_norm"
        x = checks.input_4d(op, x)
        size, alpha, beta, k = lrn_hyperparameters(op, size, alpha, beta, k)
        return x, size, alpha, beta, k, bool(divide_alpha_by_size)

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, divide_alpha_by_size):
        ctx.backend = backends.for_array(x)
        coefficient = alpha / size if divide_alpha_by_size else alpha
        y, scale = ctx.backend.lrn_forward(x, size, coefficient, beta, k)
        ctx.save_for_backward(x, y, scale)
        ctx.size, ctx.coefficient, ctx.beta, ctx.k = size, coefficient, beta, k
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d b_j/d a_i = [i == j] scale_j^-beta - 2 alpha beta a_i b_j / scale_j (backends/reference.py)
        x, y, scale = ctx.saved_tensors
        dx = ctx.backend.lrn_backward(x, y, scale, grad_output, ctx.size, ctx.coefficient, ctx.beta, ctx.k)
        return dx, None, None, None, None, None


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0, divide_alpha_by_size=False):
    """Local response normalization across channels, the paper's convention by default:

        b[c] = a[c] / (k + alpha * sum_{c' = c - size//2}^{c + size//2} a[c']^2) ^ beta

    with the window clipped at the channel edges (paper: k=2, n=5, alpha=1e-4,
    beta=0.75). Caffe, PyTorch and cuda-convnet use alpha/size instead of
    alpha: pass divide_alpha_by_size=True for their convention (then
    minicnn equals torch.nn.functional.local_response_norm). size must be odd.
    """
    return LocalResponseNorm.apply(x, size, alpha, beta, k, divide_alpha_by_size)

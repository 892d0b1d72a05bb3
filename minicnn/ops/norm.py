"""Normalization: local_response_norm (the paper's LRN), batch_norm."""

import numpy as np

from .. import backends
from .. import device as _device
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


def batch_norm_hyperparameters(op, num_features, eps, momentum):
    """num_features (a positive int), eps (> 0) and momentum (in [0, 1], or None for a cumulative
    average) checked; shared with nn.BatchNorm1d and nn.BatchNorm2d."""
    num_features = checks.positive_int(op, "num_features", num_features)
    eps = checks.number(op, "eps", eps)
    if eps <= 0:
        raise ValueError(f"{op}: eps must be > 0 (it keeps the division away from 0), got {eps}")
    if momentum is not None:
        momentum = checks.number(op, "momentum", momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{op}: momentum must be in [0, 1] or None (a cumulative average), got {momentum}")
    return num_features, eps, momentum


class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1) of x: (N, C, ...).

    training=True: mean and var are the batch's (over N and the positions of each
    channel; var biased), and the running statistics, when given, move towards them:
    running = (1 - momentum) * running + momentum * batch (the variance unbiased, * M/(M-1)).
    training=False: the running statistics are used.
    """

    @staticmethod
    def check(x, running_mean, running_var, weight, bias, training, momentum, eps):
        op = "batch_norm"
        x = checks.float_input(op, x)
        if x.ndim < 2:
            raise ValueError(f"{op}: input must be (N, C) or (N, C, ...) with channels on axis 1, got shape {x.shape}")
        channels = x.shape[1]
        others = {}
        for name, t in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
            if t is None:
                continue
            t = checks.as_tensor(op, name, t)
            if t.shape != (channels,):
                raise ValueError(f"{op}: input has {channels} channels (axis 1 of shape {x.shape}), but {name} "
                                 f"has shape {t.shape}: the layer was built for a different number of channels")
            others[name] = t
        checks.check_same(op, x, **others)
        if (running_mean is None) != (running_var is None):
            raise ValueError(f"{op}: give both running_mean and running_var, or neither")
        training = bool(training)
        if not training and running_mean is None:
            raise ValueError(f"{op}: evaluation (training=False) needs running_mean and running_var")
        values_per_channel = x.numel() // channels if channels else 0
        if training and values_per_channel <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got input of shape "
                             f"{x.shape} (the batch variance of one value is undefined; use eval mode, or a "
                             f"larger batch)")
        momentum = checks.number(op, "momentum", momentum)
        eps = checks.number(op, "eps", eps)
        return x, running_mean, running_var, weight, bias, training, momentum, eps

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        ctx.backend = backends.for_array(x)
        xp = _device.array_module(x)
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)                   # (N, C, L): L = H*W, or 1 for (N, C)
        weight = xp.ones((c,), x.dtype) if weight is None else weight
        bias = xp.zeros((c,), x.dtype) if bias is None else bias
        if training:
            mean, var = ctx.backend.batch_norm_statistics(x3)
            if running_mean is not None:
                count = x3.shape[0] * x3.shape[2]
                # in place: the module's buffers are these arrays
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += momentum * var * (count / (count - 1))
        else:
            # copies: a later training forward updates the buffers in place before this backward runs
            mean, var = running_mean.copy(), running_var.copy()
        ctx.save_for_backward(x3, mean, var, weight)
        ctx.eps, ctx.training, ctx.shape = eps, training, x.shape
        return ctx.backend.batch_norm_forward(x3, mean, var, weight, bias, eps).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        # backends/reference.py's batch_norm_backward derives these; in training mean and var depend on x
        x3, mean, var, weight = ctx.saved_tensors
        dx, dweight, dbias = ctx.backend.batch_norm_backward(x3, grad_output.reshape(x3.shape), mean, var, weight,
                                                             ctx.eps, ctx.training)
        need = ctx.needs_input_grad
        return (dx.reshape(ctx.shape) if need[0] else None, None, None,
                dweight if need[3] else None, dbias if need[4] else None, None, None, None)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalization over axis 1 of x: (N, C), (N, C, L) or (N, C, H, W), as torch.nn.functional.batch_norm.

        y = (x - mean) / sqrt(var + eps) * weight + bias        (weight, bias: (C,), default 1 and 0)

    training=True normalises with the batch's mean and biased variance (over every axis
    but 1) and, when running_mean/running_var are given (Tensors of shape (C,), such as a
    layer's buffers), updates them in place: running = (1 - momentum) * running + momentum * batch, with
    the unbiased batch variance, as PyTorch. training=False normalises with the running
    statistics. Training needs more than one value per channel (the variance of one
    value is undefined): PyTorch raises there too.
    """
    return BatchNorm.apply(x, running_mean, running_var, weight, bias, training, momentum, eps)

"""Every op of minicnn, in one place each: argument checks, forward, backward.

Like Chainer's functions: an op checks its arguments first (so bad input is a
clear ValueError/TypeError naming the argument, never a crash inside a kernel),
then asks the backend of the input's device for the forward, and records a
backward closure that asks the same backend for the gradients.

The derivatives themselves are written out, to be read, in
backends/reference.py; ops made of plain Tensor arithmetic (sigmoid, softmax,
binary cross-entropy) get their backward from the autograd.
"""

import numpy as np

from . import backends
from . import random as _random
from .tensor import Tensor

__all__ = [
    "conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "local_response_norm",
    "relu", "leaky_relu", "sigmoid", "tanh", "dropout", "linear", "flatten",
    "softmax", "log_softmax", "cross_entropy", "binary_cross_entropy_with_logits",
]


# --------------------------------------------------------------------------- argument checks
def _as_tensor(op, name, value):
    if isinstance(value, Tensor):
        return value
    raise TypeError(f"{op}: {name} must be a minicnn Tensor, got {type(value).__name__}")


def _check_float(op, name, t):
    if t.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating point tensor (float32 or float64), got dtype {t.dtype}")


def _check_ndim(op, name, t, ndim, layout):
    if t.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {t.shape}")


def _check_same(op, x, **others):
    """Other tensors must live on x's device and have x's dtype."""
    for name, t in others.items():
        if t is None:
            continue
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device} but input is on {x.device}; move both to one device")
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but input has dtype {x.dtype}")


def _pair(op, name, value, minimum):
    """An int or a pair of ints, each at least ``minimum``, as a (h, w) tuple."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_window(op, x, kernel, padding):
    """The kernel must fit inside the padded input."""
    h, w = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(f"{op}: kernel size {kernel} is larger than the padded input ({h}, {w})")


def _input_4d(op, x):
    x = _as_tensor(op, "input", x)
    _check_float(op, "input", x)
    _check_ndim(op, "input", x, 4, "(N, C, H, W)")
    return x


# --------------------------------------------------------------------------- convolution and linear
def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D cross-correlation, NCHW. weight: (O, C/groups, kH, kW); bias: (O,).

    Output size: floor((H + 2 padding - kH) / stride) + 1. With groups=2 the
    channels split into two independent towers, as AlexNet's two GPUs.
    """
    op = "conv2d"
    x = _input_4d(op, x)
    weight = _as_tensor(op, "weight", weight)
    _check_ndim(op, "weight", weight, 4, "(O, C/groups, kH, kW)")
    bias = None if bias is None else _as_tensor(op, "bias", bias)
    _check_same(op, x, weight=weight, bias=bias)
    stride, padding = _pair(op, "stride", stride, 1), _pair(op, "padding", padding, 0)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    out_ch, in_per_group = weight.shape[0], weight.shape[1]
    if x.shape[1] % groups or out_ch % groups:
        raise ValueError(f"{op}: groups={groups} must divide both the input channels ({x.shape[1]}) "
                         f"and the output channels ({out_ch})")
    if in_per_group * groups != x.shape[1]:
        raise ValueError(f"{op}: weight expects {in_per_group * groups} input channels "
                         f"({in_per_group} per group x {groups} groups), input has {x.shape[1]}")
    if bias is not None and bias.shape != (out_ch,):
        raise ValueError(f"{op}: bias must have shape ({out_ch},), got {bias.shape}")
    _check_window(op, x, weight.shape[2:], padding)

    backend = backends.for_array(x.data)
    y = backend.conv2d_forward(x.data, weight.data, None if bias is None else bias.data, stride, padding, groups)

    def backward(dy):
        return backend.conv2d_backward(x.data, weight.data, dy, stride, padding, groups,
                                       x.requires_grad, weight.requires_grad,
                                       bias is not None and bias.requires_grad)[:2 if bias is None else 3]

    return Tensor._from_op(y, (x, weight, bias), backward, op=op)


def linear(x, weight, bias=None):
    """y = x weight^T + bias, with x: (N, in), weight: (out, in) (PyTorch's layout)."""
    op = "linear"
    x = _as_tensor(op, "input", x)
    _check_float(op, "input", x)
    _check_ndim(op, "input", x, 2, "(N, in_features)")
    weight = _as_tensor(op, "weight", weight)
    _check_ndim(op, "weight", weight, 2, "(out_features, in_features)")
    bias = None if bias is None else _as_tensor(op, "bias", bias)
    _check_same(op, x, weight=weight, bias=bias)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: weight expects {weight.shape[1]} input features, input has {x.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")

    backend = backends.for_array(x.data)
    y = backend.linear_forward(x.data, weight.data, None if bias is None else bias.data)

    def backward(dy):
        return backend.linear_backward(x.data, weight.data, dy, x.requires_grad, weight.requires_grad,
                                       bias is not None and bias.requires_grad)[:2 if bias is None else 3]

    return Tensor._from_op(y, (x, weight, bias), backward, op=op)


# --------------------------------------------------------------------------- pooling
def _pool_args(op, x, kernel_size, stride, padding):
    x = _input_4d(op, x)
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}")
    _check_window(op, x, kernel, padding)
    return x, kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window (overlapping when stride < kernel, as AlexNet's 3/2 pooling).

    stride defaults to kernel_size; padding counts as -inf. Ties go to the first
    maximum in row-major window order; the gradient goes to that element only.
    """
    op = "max_pool2d"
    x, kernel, stride, padding = _pool_args(op, x, kernel_size, stride, padding)
    backend = backends.for_array(x.data)
    y, argmax = backend.max_pool2d_forward(x.data, kernel, stride, padding)
    shape = x.shape
    return Tensor._from_op(y, (x,), lambda dy: backend.max_pool2d_backward(dy, argmax, shape, kernel, stride, padding),
                           op=op)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window; zero padding is counted (divisor kH*kW, PyTorch's default)."""
    op = "avg_pool2d"
    x, kernel, stride, padding = _pool_args(op, x, kernel_size, stride, padding)
    backend = backends.for_array(x.data)
    y = backend.avg_pool2d_forward(x.data, kernel, stride, padding)
    shape = x.shape
    return Tensor._from_op(y, (x,), lambda dy: backend.avg_pool2d_backward(dy, shape, kernel, stride, padding), op=op)


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): the mean of each channel's plane."""
    x = _input_4d("global_avg_pool2d", x)
    return x.mean(axis=(2, 3))


# --------------------------------------------------------------------------- normalization
def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0, divide_alpha_by_size=False):
    """Local response normalization across channels, the paper's convention by default:

        b[c] = a[c] / (k + alpha * sum_{c' = c - size//2}^{c + size//2} a[c']^2) ^ beta

    with the window clipped at the channel edges (paper: k=2, n=5, alpha=1e-4,
    beta=0.75). Caffe, PyTorch and cuda-convnet use alpha/size instead of
    alpha: pass divide_alpha_by_size=True for their convention (then
    minicnn equals torch.nn.functional.local_response_norm). size must be odd.
    """
    op = "local_response_norm"
    x = _input_4d(op, x)
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"{op}: size must be a positive odd int (a window centred on each channel), got {size!r}")
    if k <= 0 or alpha < 0:
        raise ValueError(f"{op}: need k > 0 and alpha >= 0, got k={k}, alpha={alpha}")
    coefficient = alpha / size if divide_alpha_by_size else alpha
    backend = backends.for_array(x.data)
    y, scale = backend.lrn_forward(x.data, size, coefficient, beta, k)
    return Tensor._from_op(y, (x,), lambda dy: backend.lrn_backward(x.data, y, scale, dy, size, coefficient, beta, k),
                           op=op)


# --------------------------------------------------------------------------- activations
def _float_input(op, x):
    x = _as_tensor(op, "input", x)
    _check_float(op, "input", x)
    return x


def leaky_relu(x, negative_slope=0.01):
    """y = x for x > 0, negative_slope * x otherwise."""
    op = "leaky_relu"
    x = _float_input(op, x)
    backend = backends.for_array(x.data)
    y = backend.relu_forward(x.data, negative_slope)
    return Tensor._from_op(y, (x,), lambda dy: backend.relu_backward(x.data, dy, negative_slope), op=op)


def relu(x):
    """y = max(x, 0); the gradient at 0 is taken as 0."""
    return leaky_relu(x, 0.0)


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow; d/dx = y (1 - y)."""
    x = _float_input("sigmoid", x)
    xp = x.xp
    y = xp.exp(-xp.logaddexp(0, -x.data)).astype(x.dtype)
    return Tensor._from_op(y, (x,), lambda dy: dy * y * (1 - y), op="sigmoid")


def tanh(x):
    """d tanh(x)/dx = 1 - tanh(x)^2."""
    x = _float_input("tanh", x)
    y = x.xp.tanh(x.data)
    return Tensor._from_op(y, (x,), lambda dy: dy * (1 - y * y), op="tanh")


def dropout(x, p=0.5, training=True, seed=None):
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p).

    Identity when not training, which matches the paper's "multiply the outputs
    by 0.5 at test time". The mask is a hash of (seed, element index); the seed
    is drawn from minicnn's generator (mc.manual_seed) unless given, so every
    device draws the same mask.
    """
    op = "dropout"
    x = _float_input(op, x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    seed = _random.next_seed() if seed is None else int(seed) & 0xFFFFFFFF
    backend = backends.for_array(x.data)
    threshold, scale = backends.reference.dropout_threshold_and_scale(p, x.dtype)
    y = backend.dropout_forward(x.data, threshold, scale, seed)
    return Tensor._from_op(y, (x,), lambda dy: backend.dropout_backward(dy, threshold, scale, seed), op=op)


def flatten(x):
    """(N, ...) -> (N, everything else)."""
    x = _as_tensor("flatten", "input", x)
    if x.ndim < 1:
        raise ValueError("flatten: input needs a batch dimension, got a 0-d tensor")
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- softmax and losses
def _check_axis(op, x, axis):
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a {x.ndim}-D input")


def log_softmax(x, axis=-1):
    """z - logsumexp(z), with the max subtracted first so exp never overflows."""
    x = _float_input("log_softmax", x)
    _check_axis("log_softmax", x, axis)
    shift = x.data.max(axis=axis, keepdims=True)       # a constant: no gradient flows through it
    shifted = x - Tensor(shift)
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


def softmax(x, axis=-1):
    """exp(z) / sum(exp(z)), stable."""
    return log_softmax(x, axis).exp()


def _check_labels(op, logits, labels):
    if isinstance(labels, Tensor):
        labels = labels.data
    xp = logits.xp
    labels = xp.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class ids, got dtype {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"{op}: labels must have shape ({logits.shape[0]},) to match the logits, got {labels.shape}")
    classes = logits.shape[1]
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"{op}: labels must be in [0, {classes - 1}], got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    return labels.astype(np.int64)


def cross_entropy(logits, labels):
    """Softmax cross-entropy, mean over the batch. logits: (N, classes); labels: (N,) ints."""
    op = "cross_entropy"
    logits = _float_input(op, logits)
    _check_ndim(op, "logits", logits, 2, "(N, classes)")
    labels = _check_labels(op, logits, labels)
    backend = backends.for_array(logits.data)
    loss, probs = backend.softmax_cross_entropy_forward(logits.data, labels)
    return Tensor._from_op(loss, (logits,), lambda dl: backend.softmax_cross_entropy_backward(probs, labels, dl), op=op)


def binary_cross_entropy_with_logits(logits, targets):
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], stable form:

        max(z, 0) - z t + log(1 + exp(-|z|))

    targets are 0/1 (or probabilities) of the logits' shape.
    """
    op = "binary_cross_entropy_with_logits"
    logits = _float_input(op, logits)
    if isinstance(targets, Tensor):
        targets = targets.data
    targets = logits.xp.asarray(targets)
    if targets.shape != logits.shape:
        raise ValueError(f"{op}: targets must have the logits' shape {logits.shape}, got {targets.shape}")
    t = targets.astype(logits.dtype)
    if t.size and (float(t.min()) < 0 or float(t.max()) > 1):
        raise ValueError(f"{op}: targets must lie in [0, 1]")
    xp = logits.xp
    z = logits.data
    loss = (xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))).mean()
    n = z.size
    sig = xp.exp(-xp.logaddexp(0, -z)).astype(z.dtype)   # sigmoid(z), stable
    # d loss / dz = (sigmoid(z) - t) / N
    return Tensor._from_op(xp.asarray(loss, dtype=z.dtype), (logits,), lambda dl: (sig - t) * (dl / n), op=op)

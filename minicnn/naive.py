"""Every op as plain loops over its indices: the naive definitions (CS231n's "naive" versions).

Each function says, in loops a student can follow line by line, what an op
computes; its docstring gives the formula. These are the definitions the tests
check every backend against (small shapes only: the loops are slow on purpose).
Each op exists three times, once in each of:

    minicnn/naive.py             loops: what the op means (this file)
    minicnn/backends/reference.py  NumPy, vectorised: how the reference computes it
    csrc/*.cuh                   the CUDA kernels (also compiled for the CPU, backends/host.py)

Conventions: NumPy arrays in, float64 NumPy arrays out, whatever the input dtype
(a definition, not a model of any backend's rounding); layout NCHW; kernel,
stride and padding are an int or an (h, w) pair; output sizes are
floor((H + 2 padding - kernel) / stride) + 1 (minicnn.shapes.output_size).
Only forward passes live here: the backward passes are checked against central
differences of these forwards (mc.gradcheck).
"""

import math

import numpy as np

from .shapes import output_size


def _pair(value):
    """An int or an (h, w) pair, as an (h, w) tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


# --------------------------------------------------------------------------- convolution and linear
def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D cross-correlation, NCHW, zero padding, channels split into ``groups``:

        y[n, o, oy, ox] = b[o] + sum over c, i, j of
                          w[o, c, i, j] * x[n, g*Cg + c, oy*sh + i - ph, ox*sw + j - pw]

    with x: (N, C, H, W), w: (O, Cg, kH, kW), Cg = C/groups input channels per
    group, g = o // (O/groups) the group of output channel o, and x = 0 outside
    the image. Six loops: the output element (n, o, oy, ox) and the kernel offset
    (i, j); the sum over the group's Cg channels is a dot product.
    """
    n_images, _, height, width = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    oh, ow = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    per_group = out_channels // groups
    x, weight = x.astype(np.float64), weight.astype(np.float64)
    y = np.zeros((n_images, out_channels, oh, ow))
    for n in range(n_images):
        for o in range(out_channels):
            first = (o // per_group) * group_channels        # the group's first input channel
            channels = slice(first, first + group_channels)
            for oy in range(oh):
                for ox in range(ow):
                    total = 0.0 if bias is None else float(bias[o])
                    for i in range(kh):
                        for j in range(kw):
                            r, q = oy * sh + i - ph, ox * sw + j - pw
                            if 0 <= r < height and 0 <= q < width:          # zero padding adds nothing
                                total += np.dot(weight[o, :, i, j], x[n, channels, r, q])
                    y[n, o, oy, ox] = total
    return y


def linear(x, weight, bias=None):
    """y[n, o] = b[o] + sum over k of x[n, k] * w[o, k], with x: (N, in), w: (out, in)."""
    n_rows, fan_in = x.shape
    fan_out = weight.shape[0]
    y = np.zeros((n_rows, fan_out))
    for n in range(n_rows):
        for o in range(fan_out):
            total = 0.0 if bias is None else float(bias[o])
            for k in range(fan_in):
                total += float(x[n, k]) * float(weight[o, k])
            y[n, o] = total
    return y


# --------------------------------------------------------------------------- pooling
def _window(oy, ox, size, kernel, stride, padding):
    """The rows and columns of input window (oy, ox), clipped to the image (padding dropped)."""
    (height, width), (kh, kw), (sh, sw), (ph, pw) = size, kernel, stride, padding
    top, left = oy * sh - ph, ox * sw - pw
    return slice(max(top, 0), min(top + kh, height)), slice(max(left, 0), min(left + kw, width))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """y[n, c, oy, ox] = max over i, j of x[n, c, oy*sh + i - ph, ox*sw + j - pw].

    Padding never wins (it counts as -inf), so the max is over the window's part
    inside the image. Four loops: one per output index; the window is a slice.
    (The gradient goes to the window's maximum, to the first in row-major order
    when several tie.)
    """
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    padding = _pair(padding)
    n_images, channels, height, width = x.shape
    oh, ow = output_size(height, kernel[0], stride[0], padding[0]), output_size(width, kernel[1], stride[1], padding[1])
    y = np.zeros((n_images, channels, oh, ow))
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    rows, cols = _window(oy, ox, (height, width), kernel, stride, padding)
                    y[n, c, oy, ox] = x[n, c, rows, cols].max()
    return y


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """y[n, c, oy, ox] = (1 / (kH kW)) sum over i, j of x[n, c, oy*sh + i - ph, ox*sw + j - pw].

    Zero padding is counted: the divisor is always kH*kW (PyTorch's default).
    Four loops: one per output index; the window is a slice.
    """
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    padding = _pair(padding)
    n_images, channels, height, width = x.shape
    oh, ow = output_size(height, kernel[0], stride[0], padding[0]), output_size(width, kernel[1], stride[1], padding[1])
    y = np.zeros((n_images, channels, oh, ow))
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    rows, cols = _window(oy, ox, (height, width), kernel, stride, padding)
                    y[n, c, oy, ox] = x[n, c, rows, cols].astype(np.float64).sum() / (kernel[0] * kernel[1])
    return y


def global_avg_pool2d(x):
    """y[n, c] = the mean of x[n, c, :, :], the whole plane."""
    n_images, channels = x.shape[:2]
    y = np.zeros((n_images, channels))
    for n in range(n_images):
        for c in range(channels):
            y[n, c] = x[n, c].astype(np.float64).mean()
    return y


# --------------------------------------------------------------------------- local response normalization
def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """The paper's LRN (Krizhevsky et al. 2012, section 3.3):

        b[n, c, h, w] = a[n, c, h, w] / (k + alpha * sum over c' of a[n, c', h, w]^2) ^ beta

    c' over the ``size`` channels centred on c, clipped at the first and last
    channel; alpha is NOT divided by size (Caffe's and PyTorch's convention is
    this with alpha/size).
    """
    n_images, channels, height, width = x.shape
    half = size // 2
    y = np.zeros(x.shape)
    for n in range(n_images):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    total = sum(float(x[n, j, h, w]) ** 2 for j in range(max(0, c - half), min(channels, c + half + 1)))
                    y[n, c, h, w] = float(x[n, c, h, w]) / (k + alpha * total) ** beta
    return y


# --------------------------------------------------------------------------- activations
def leaky_relu(x, negative_slope=0.01):
    """y = x where x > 0, negative_slope * x elsewhere."""
    y = np.zeros(x.shape)
    for i, v in enumerate(x.flat):
        y.flat[i] = v if v > 0 else negative_slope * v
    return y


def relu(x):
    """y = max(x, 0)."""
    return leaky_relu(x, 0.0)


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), written as exp(x) / (1 + exp(x)) for x < 0 so exp never overflows."""
    y = np.zeros(x.shape)
    for i, v in enumerate(x.flat):
        y.flat[i] = 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    return y


def tanh(x):
    """y = (exp(x) - exp(-x)) / (exp(x) + exp(-x))."""
    y = np.zeros(x.shape)
    for i, v in enumerate(x.flat):
        y.flat[i] = math.tanh(v)
    return y


# --------------------------------------------------------------------------- dropout
def _fmix32(h):
    """MurmurHash3's 32-bit finalizer, on a Python int."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def dropout_hash(seed, index):
    """hash(seed, i) = fmix32(seed ^ fmix32(lo(i) + 0x9E3779B9 * (hi(i) + 1))), lo/hi the 32-bit
    halves of the 64-bit element index i, arithmetic modulo 2^32 (mc_dropout_hash in csrc/common.cuh)."""
    lo, hi = index & 0xFFFFFFFF, index >> 32
    return _fmix32(seed ^ _fmix32((lo + 0x9E3779B9 * (hi + 1)) & 0xFFFFFFFF))


def dropout_keep(seed, index, p):
    """Element ``index`` (flat, row-major) is kept when its 24-bit draw hash >> 8 is at least
    round(p 2^24): with probability 1 - p."""
    return (dropout_hash(seed, index) >> 8) >= round(p * (1 << 24))


def dropout(x, p, seed):
    """Inverted dropout: y = x / (1 - p) where dropout_keep(seed, flat index, p), 0 elsewhere."""
    y = np.zeros(x.shape)
    for i, v in enumerate(x.flat):
        if dropout_keep(seed, i, p):
            y.flat[i] = v / (1 - p)
    return y


# --------------------------------------------------------------------------- softmax and the losses
def _rows(z, axis):
    """z with ``axis`` moved last, as float64, and a function that moves it back."""
    moved = np.moveaxis(np.asarray(z, dtype=np.float64), axis, -1)
    return moved, lambda y: np.moveaxis(y, -1, axis)


def softmax(z, axis=-1):
    """y_i = exp(z_i - m) / sum over j of exp(z_j - m) along ``axis``, m = max_j z_j
    (subtracting m changes nothing but keeps exp from overflowing)."""
    rows, back = _rows(z, axis)
    y = np.zeros(rows.shape)
    for index in np.ndindex(rows.shape[:-1]):
        row = rows[index]
        m = max(row)
        total = sum(math.exp(v - m) for v in row)
        for i, v in enumerate(row):
            y[index + (i,)] = math.exp(v - m) / total
    return back(y)


def log_softmax(z, axis=-1):
    """y_i = z_i - m - log(sum over j of exp(z_j - m)) along ``axis``, m = max_j z_j."""
    rows, back = _rows(z, axis)
    y = np.zeros(rows.shape)
    for index in np.ndindex(rows.shape[:-1]):
        row = rows[index]
        m = max(row)
        log_total = math.log(sum(math.exp(v - m) for v in row))
        for i, v in enumerate(row):
            y[index + (i,)] = v - m - log_total
    return back(y)


def cross_entropy(logits, labels):
    """loss = (1/N) sum over n of -log softmax(z[n])[labels[n]]
            = (1/N) sum over n of (m_n + log sum_j exp(z[n, j] - m_n) - z[n, labels[n]]), m_n = max_j z[n, j]."""
    log_probs = log_softmax(logits, axis=1)
    n_rows = log_probs.shape[0]
    return sum(-log_probs[n, labels[n]] for n in range(n_rows)) / n_rows


def _log_sigmoid(v):
    """log(1 / (1 + exp(-v))), without overflow for either sign of v."""
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


def binary_cross_entropy_with_logits(logits, targets):
    """loss = mean over every element of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))],
    using log(1 - sigmoid(z)) = log sigmoid(-z)."""
    z, t = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    total = 0.0
    for v, target in zip(z.flat, t.flat):
        total += -(target * _log_sigmoid(v) + (1 - target) * _log_sigmoid(-v))
    return total / z.size


# --------------------------------------------------------------------------- optimizer updates
def sgd_update(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step, element by element (PyTorch's form; the paper's with lr folded into v):

        g = grad + weight_decay * param
        v = momentum * v + g                      (no v when momentum is 0: the step is g)
        param = param - lr * (g + momentum * v if nesterov else v)

    Returns the new (param, velocity); the inputs are not changed.
    """
    param, velocity = np.array(param, dtype=np.float64), np.array(velocity, dtype=np.float64)
    for i in range(param.size):
        g = float(grad.flat[i]) + weight_decay * param.flat[i]
        if momentum == 0:
            param.flat[i] -= lr * g
            continue
        velocity.flat[i] = momentum * velocity.flat[i] + g
        param.flat[i] -= lr * (g + momentum * velocity.flat[i] if nesterov else velocity.flat[i])
    return param, velocity


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step (Kingma & Ba), element by element; step counts from 1:

        g = grad + weight_decay * param
        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
        param = param - lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)

    Returns the new (param, m, v); the inputs are not changed.
    """
    param, m, v = (np.array(a, dtype=np.float64) for a in (param, m, v))
    for i in range(param.size):
        g = float(grad.flat[i]) + weight_decay * param.flat[i]
        m.flat[i] = beta1 * m.flat[i] + (1 - beta1) * g
        v.flat[i] = beta2 * v.flat[i] + (1 - beta2) * g * g
        m_hat = m.flat[i] / (1 - beta1 ** step)
        v_hat = v.flat[i] / (1 - beta2 ** step)
        param.flat[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return param, m, v

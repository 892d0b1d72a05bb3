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
stride and padding are an int or an (h, w) pair (pooling's padding also a
(top, bottom, left, right) tuple); output sizes are
floor((H + 2 padding - kernel) / stride) + 1 (minicnn.shapes.output_size), or
pooling's ceil_mode rounding (minicnn.shapes.pool_output_size).
Only forward passes live here: the backward passes are checked against central
differences of these forwards (mc.gradcheck).
"""

import math

import numpy as np

from .shapes import output_size, pool_output_size


def _pair(value):
    """An int or an (h, w) pair, as an (h, w) tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def _four(padding):
    """An int, an (h, w) pair or a (top, bottom, left, right) tuple, as (top, bottom, left, right)."""
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(int(p) for p in padding)
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


# --------------------------------------------------------------------------- convolution and linear
def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1, dilation=1):
    """2-D cross-correlation, NCHW, zero padding, channels split into ``groups``:

        y[n, o, oy, ox] = b[o] + sum over c, i, j of
                          w[o, c, i, j] * x[n, g*Cg + c, oy*sh + i*dh - top, ox*sw + j*dw - left]

    with x: (N, C, H, W), w: (O, Cg, kH, kW), Cg = C/groups input channels per
    group, g = o // (O/groups) the group of output channel o, and x = 0 outside
    the image. padding: an int, (h, w) or (top, bottom, left, right); dilation d
    spaces the taps d apart. Six loops: the output element (n, o, oy, ox) and the
    kernel offset (i, j); the sum over the group's Cg channels is a dot product.
    """
    n_images, _, height, width = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    top, bottom, left, right = _four(padding)
    oh = output_size(height, kh, sh, (top, bottom), dh)
    ow = output_size(width, kw, sw, (left, right), dw)
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
                            r, q = oy * sh + i * dh - top, ox * sw + j * dw - left
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
def _pool_windows(size, kernel_size, stride, padding, ceil_mode):
    """The pooling windows over an image of ``size`` (H, W): kernel, (top, bottom, left, right),
    the output size (minicnn.shapes.pool_output_size: floor, or with ceil_mode PyTorch's ceiling),
    and window(oy, ox): the rows and columns it covers, in image coordinates (negative, or from
    H and W on, inside the padding)."""
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    top, bottom, left, right = padding = _four(padding)
    oh = pool_output_size(size[0], kernel[0], stride[0], top, bottom, ceil_mode)
    ow = pool_output_size(size[1], kernel[1], stride[1], left, right, ceil_mode)

    def window(oy, ox):
        return (range(oy * stride[0] - top, oy * stride[0] - top + kernel[0]),
                range(ox * stride[1] - left, ox * stride[1] - left + kernel[1]))
    return kernel, padding, (oh, ow), window


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
    """y[n, c, oy, ox] = max over i, j of x[n, c, oy*sh + i - top, ox*sw + j - left].

    Padding never wins (it counts as -inf), so the max is over the window's pixels
    inside the image. Four loops over the outputs, two over the window. With
    return_indices, also the flat index r*W + q of each window's maximum, the first
    in row-major order when several tie (where the gradient goes).
    """
    n_images, channels, height, width = x.shape
    _, _, (oh, ow), window = _pool_windows((height, width), kernel_size, stride, padding, ceil_mode)
    y, indices = np.zeros((n_images, channels, oh, ow)), np.zeros((n_images, channels, oh, ow), np.int64)
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    rows, cols = window(oy, ox)
                    best = -math.inf
                    for r in rows:
                        for q in cols:
                            if 0 <= r < height and 0 <= q < width and x[n, c, r, q] > best:
                                best, indices[n, c, oy, ox] = float(x[n, c, r, q]), r * width + q
                    y[n, c, oy, ox] = best
    return (y, indices) if return_indices else y


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """y[n, c, oy, ox] = (1 / divisor) sum over i, j of x[n, c, oy*sh + i - top, ox*sw + j - left],

    zero outside the image. count_include_pad=True (PyTorch's default): the divisor counts
    the window's positions inside the padded input, kH*kW except where a ceil_mode window
    reaches past the padding; False: it counts only the window's pixels of the image.
    Four loops over the outputs, two over the window.
    """
    n_images, channels, height, width = x.shape
    _, (top, bottom, left, right), (oh, ow), window = _pool_windows((height, width), kernel_size, stride, padding,
                                                                    ceil_mode)
    y = np.zeros((n_images, channels, oh, ow))
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    rows, cols = window(oy, ox)
                    total, divisor = 0.0, 0
                    for r in rows:
                        for q in cols:
                            in_image = 0 <= r < height and 0 <= q < width
                            in_padding = -top <= r < height + bottom and -left <= q < width + right
                            if in_image:
                                total += float(x[n, c, r, q])
                            if in_image or (count_include_pad and in_padding):
                                divisor += 1
                    y[n, c, oy, ox] = total / divisor
    return y


def max_unpool2d(x, indices, output_size):
    """y: (N, C, H, W) of zeros, with y[n, c] at flat position indices[n, c, i, j] = x[n, c, i, j]
    (max pooling's return_indices): each maximum goes back where it came from."""
    n_images, channels = x.shape[:2]
    height, width = output_size
    y = np.zeros((n_images, channels, height * width))
    for n in range(n_images):
        for c in range(channels):
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    y[n, c, indices[n, c, i, j]] = x[n, c, i, j]
    return y.reshape(n_images, channels, height, width)


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


# --------------------------------------------------------------------------- batch normalization
def batch_norm(x, weight=None, bias=None, mean=None, var=None, eps=1e-5):
    """y[n, c, ...] = (x[n, c, ...] - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]

    for x: (N, C) or (N, C, ...). Without mean and var (training) they are the batch's:
    mean[c] = the average of the M values of channel c (N times the positions), var[c] =
    the average of their squared deviations from it (divided by M, not M - 1).
    """
    n_images, channels = x.shape[:2]
    planes = np.asarray(x, dtype=np.float64).reshape(n_images, channels, -1)      # (N, C, positions)
    y = np.zeros(planes.shape)
    for c in range(channels):
        values = [planes[n, c, p] for n in range(n_images) for p in range(planes.shape[2])]
        if mean is None:
            m = sum(values) / len(values)
            v = sum((value - m) ** 2 for value in values) / len(values)
        else:
            m, v = float(mean[c]), float(var[c])
        w = 1.0 if weight is None else float(weight[c])
        b = 0.0 if bias is None else float(bias[c])
        for n in range(n_images):
            for p in range(planes.shape[2]):
                y[n, c, p] = (planes[n, c, p] - m) / math.sqrt(v + eps) * w + b
    return y.reshape(x.shape)


def running_statistics(batches, momentum=0.1):
    """The running mean and variance a BatchNorm layer holds after training on ``batches`` (a
    list of (N, C, ...) arrays), starting from 0 and 1: after each batch
    running = (1 - momentum) * running + momentum * the batch's statistic, the batch's
    variance unbiased (divided by M - 1); momentum=None averages all batches so far equally."""
    channels = batches[0].shape[1]
    mean, var = [0.0] * channels, [1.0] * channels
    for seen, x in enumerate(batches, start=1):
        factor = 1.0 / seen if momentum is None else momentum
        planes = np.asarray(x, dtype=np.float64).reshape(x.shape[0], channels, -1)
        for c in range(channels):
            values = list(planes[:, c, :].reshape(-1))
            m = sum(values) / len(values)
            unbiased = sum((value - m) ** 2 for value in values) / (len(values) - 1)
            mean[c] = (1 - factor) * mean[c] + factor * m
            var[c] = (1 - factor) * var[c] + factor * unbiased
    return np.array(mean), np.array(var)


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


def dropout(x, p, seed, offset=0):
    """Inverted dropout: y = x / (1 - p) where dropout_keep(seed, offset + flat index, p), 0 elsewhere.
    offset: the global index of x's first element (its first sample's place in the global batch
    times the elements per sample), so a slice of a batch draws the slice of the batch's mask."""
    y = np.zeros(x.shape)
    for i, v in enumerate(x.flat):
        if dropout_keep(seed, offset + i, p):
            y.flat[i] = v / (1 - p)
    return y


def dropout2d(x, p, seed, offset=0):
    """Channel dropout of x: (N, C, H, W): plane (n, c) is kept, scaled by 1 / (1 - p), when
    dropout_keep(seed, offset + n*C + c, p) (one draw per plane, dropout's hash), zeroed otherwise."""
    n_images, channels = x.shape[:2]
    y = np.zeros(x.shape)
    for n in range(n_images):
        for c in range(channels):
            if dropout_keep(seed, offset + n * channels + c, p):
                y[n, c] = np.asarray(x[n, c], dtype=np.float64) / (1 - p)
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


def _samples(scores, labels):
    """Each sample of (N, C) or (N, C, d1, ...) scores: (its C scores, its label), an image's, or
    one position's of one image."""
    n_images, classes = scores.shape[:2]
    flat = np.asarray(scores, dtype=np.float64).reshape(n_images, classes, -1)
    flat_labels = np.asarray(labels).reshape(n_images, -1)
    return [(flat[n, :, d], int(flat_labels[n, d])) for n in range(n_images) for d in range(flat.shape[2])]


def _reduce(losses, counts, reduction, labels_shape):
    """The samples' losses as the loss reports them: "none" each, "sum" their sum, "mean" their sum
    over the sum of ``counts`` (how much each sample counts)."""
    if reduction == "none":
        return np.array(losses).reshape(labels_shape)
    if reduction == "sum":
        return sum(losses)
    return sum(losses) / sum(counts)


def cross_entropy(logits, labels, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Sample i (an image of (N, C) logits, or a position of (N, C, d1, ...) ones) with label y costs,
    with q = log_softmax of its C scores, w = weight (all 1 without it) and s = label_smoothing,

        (1 - s) * w[y] * (-q[y]) + (s / C) * sum over c of w[c] * (-q[c])

    and 0 when y == ignore_index. "mean" (the default) divides the sum by the sum of w[y] over
    the samples not ignored: with no options, (1/N) sum over n of -log softmax(z[n])[labels[n]].
    """
    losses, counts = [], []
    for z, y in _samples(logits, labels):
        classes = len(z)
        w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
        if y == ignore_index:
            losses.append(0.0)
            counts.append(0.0)
            continue
        m = max(z)
        q = [zc - m - math.log(sum(math.exp(zk - m) for zk in z)) for zc in z]
        spread = sum(w[c] * -q[c] for c in range(classes)) / classes
        losses.append((1 - label_smoothing) * w[y] * -q[y] + label_smoothing * spread)
        counts.append(w[y])
    return _reduce(losses, counts, reduction, np.shape(labels))


def nll_loss(log_probs, labels, weight=None, ignore_index=-100, reduction="mean"):
    """Sample i with label y costs -weight[y] * log_probs_i[y] (0 when y == ignore_index); "mean"
    divides the sum by the sum of weight[y] over the samples not ignored."""
    losses, counts = [], []
    for q, y in _samples(log_probs, labels):
        w = 0.0 if y == ignore_index else (1.0 if weight is None else float(weight[y]))
        losses.append(0.0 if y == ignore_index else -w * q[y])
        counts.append(w)
    return _reduce(losses, counts, reduction, np.shape(labels))


def mse_loss(x, target, reduction="mean"):
    """(x - target)^2 per element; "mean" averages them, "sum" adds them up, "none" keeps them."""
    errors = [(float(a) - float(b)) ** 2 for a, b in zip(np.ravel(x), np.ravel(target))]
    if reduction == "none":
        return np.array(errors).reshape(np.shape(x))
    return sum(errors) if reduction == "sum" else sum(errors) / len(errors)


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


def adamw_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One AdamW step (Loshchilov & Hutter; PyTorch's AdamW), element by element; step counts from 1:

        param = param * (1 - lr * weight_decay)          (decoupled: the gradient is not touched)
        m = beta1 m + (1 - beta1) grad,   v = beta2 v + (1 - beta2) grad^2
        param = param - lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps)

    Returns the new (param, m, v); the inputs are not changed.
    """
    param, m, v = (np.array(a, dtype=np.float64) for a in (param, m, v))
    for i in range(param.size):
        g = float(grad.flat[i])
        param.flat[i] *= 1 - lr * weight_decay
        m.flat[i] = beta1 * m.flat[i] + (1 - beta1) * g
        v.flat[i] = beta2 * v.flat[i] + (1 - beta2) * g * g
        m_hat = m.flat[i] / (1 - beta1 ** step)
        v_hat = v.flat[i] / (1 - beta2 ** step)
        param.flat[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return param, m, v


def rmsprop_update(param, grad, square_avg, grad_avg, buffer, lr, alpha, eps, weight_decay=0.0, momentum=0.0,
                   centered=False):
    """One RMSprop step (PyTorch's), element by element:

        g = grad + weight_decay * param
        square_avg = alpha square_avg + (1 - alpha) g^2
        centered:  grad_avg = alpha grad_avg + (1 - alpha) g;  avg = sqrt(square_avg - grad_avg^2) + eps
        otherwise: avg = sqrt(square_avg) + eps
        momentum > 0: buffer = momentum buffer + g / avg;  param = param - lr * buffer
        otherwise:    param = param - lr * g / avg

    Returns the new (param, square_avg, grad_avg, buffer); the inputs are not changed.
    """
    param, square_avg, grad_avg, buffer = (np.array(a, dtype=np.float64)
                                           for a in (param, square_avg, grad_avg, buffer))
    for i in range(param.size):
        g = float(grad.flat[i]) + weight_decay * param.flat[i]
        square_avg.flat[i] = alpha * square_avg.flat[i] + (1 - alpha) * g * g
        if centered:
            grad_avg.flat[i] = alpha * grad_avg.flat[i] + (1 - alpha) * g
            avg = math.sqrt(square_avg.flat[i] - grad_avg.flat[i] ** 2) + eps
        else:
            avg = math.sqrt(square_avg.flat[i]) + eps
        if momentum > 0:
            buffer.flat[i] = momentum * buffer.flat[i] + g / avg
            param.flat[i] -= lr * buffer.flat[i]
        else:
            param.flat[i] -= lr * g / avg
    return param, square_avg, grad_avg, buffer

"""Loop-by-loop definitions of batch normalization, the pooling options and the losses with
PyTorch's options: what each op means, in loops a student can follow (the naive versions,
as CS231n writes them). Tests check every backend against these on small shapes.

Conventions as minicnn/naive.py's: NumPy arrays in, float64 NumPy arrays out; NCHW;
padding (top, bottom, left, right); only forward passes (backward passes are checked
against central differences of these by mc.gradcheck).
"""

import math

import numpy as np

from .shapes import pool_output_size


# --------------------------------------------------------------------------- batch normalization
def batch_norm(x, weight=None, bias=None, mean=None, var=None, eps=1e-5):
    """y[n, c, ...] = (x[n, c, ...] - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]

    for x: (N, C) or (N, C, ...). Without mean and var (training), they are the batch's:
    mean[c] = the average of the M = N * (positions) values of channel c, var[c] = the
    average of their squared deviations from it (divided by M, not M - 1).
    """
    x = x.astype(np.float64)
    n_images, channels = x.shape[:2]
    planes = x.reshape(n_images, channels, -1)           # (N, C, positions)
    y = np.zeros_like(planes)
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
    list of (N, C, ...) arrays), starting from 0 and 1: after each batch,
    running = (1 - momentum) * running + momentum * batch statistic, with the batch's
    variance unbiased (divided by M - 1); momentum=None averages all batches so far equally."""
    channels = batches[0].shape[1]
    mean, var = [0.0] * channels, [1.0] * channels
    for seen, x in enumerate(batches, start=1):
        factor = 1.0 / seen if momentum is None else momentum
        planes = x.astype(np.float64).reshape(x.shape[0], channels, -1)
        for c in range(channels):
            values = list(planes[:, c, :].reshape(-1))
            m = sum(values) / len(values)
            unbiased = sum((value - m) ** 2 for value in values) / (len(values) - 1)
            mean[c] = (1 - factor) * mean[c] + factor * m
            var[c] = (1 - factor) * var[c] + factor * unbiased
    return np.array(mean), np.array(var)


# --------------------------------------------------------------------------- pooling
def _pool_windows(shape, kernel, stride, padding, ceil_mode):
    """Every window (oy, ox) of pooling a (N, C, H, W) input: its output size and, per window,
    the first row and column it covers (in the unpadded image; negative inside the padding)."""
    (kh, kw), (sh, sw), (top, bottom, left, right) = kernel, stride, padding
    oh = pool_output_size(shape[2], kh, sh, top, bottom, ceil_mode)
    ow = pool_output_size(shape[3], kw, sw, left, right, ceil_mode)
    return oh, ow, lambda oy, ox: (oy * sh - top, ox * sw - left)


def max_pool2d(x, kernel, stride, padding=(0, 0, 0, 0), ceil_mode=False):
    """(y, indices): y[n, c, oy, ox] = the largest x[n, c, r, q] over the window's pixels inside
    the image (padding never wins); indices = r * W + q of the first largest in row-major order."""
    n_images, channels, height, width = x.shape
    oh, ow, corner = _pool_windows(x.shape, kernel, stride, padding, ceil_mode)
    y, indices = np.zeros((n_images, channels, oh, ow)), np.zeros((n_images, channels, oh, ow), np.int64)
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    r0, q0 = corner(oy, ox)
                    best, where = -math.inf, None
                    for r in range(r0, r0 + kernel[0]):
                        for q in range(q0, q0 + kernel[1]):
                            if 0 <= r < height and 0 <= q < width and x[n, c, r, q] > best:
                                best, where = float(x[n, c, r, q]), r * width + q
                    y[n, c, oy, ox], indices[n, c, oy, ox] = best, where
    return y, indices


def avg_pool2d(x, kernel, stride, padding=(0, 0, 0, 0), ceil_mode=False, count_include_pad=True):
    """y[n, c, oy, ox] = (sum of the window's pixels inside the image) / divisor, where the
    divisor counts the window's positions inside the padded input (count_include_pad: kH*kW,
    less only where a ceil_mode window reaches past the padding) or inside the image."""
    n_images, channels, height, width = x.shape
    top, bottom, left, right = padding
    oh, ow, corner = _pool_windows(x.shape, kernel, stride, padding, ceil_mode)
    y = np.zeros((n_images, channels, oh, ow))
    for n in range(n_images):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    r0, q0 = corner(oy, ox)
                    total, divisor = 0.0, 0
                    for r in range(r0, r0 + kernel[0]):
                        for q in range(q0, q0 + kernel[1]):
                            inside = 0 <= r < height and 0 <= q < width
                            padded = -top <= r < height + bottom and -left <= q < width + right
                            if inside:
                                total += float(x[n, c, r, q])
                            if inside or (count_include_pad and padded):
                                divisor += 1
                    y[n, c, oy, ox] = total / divisor
    return y


def max_unpool2d(x, indices, output_size):
    """y: (N, C, H, W) of zeros, with y[n, c] at flat position indices[n, c, i, j] = x[n, c, i, j]."""
    n_images, channels = x.shape[:2]
    y = np.zeros((n_images, channels, output_size[0] * output_size[1]))
    for n in range(n_images):
        for c in range(channels):
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    y[n, c, indices[n, c, i, j]] = x[n, c, i, j]
    return y.reshape(n_images, channels, *output_size)


# --------------------------------------------------------------------------- losses
def _samples(scores, labels):
    """Each sample of (N, C, d1, ...) scores as (its C scores, its label): an image of (N, C)
    scores, or one position of one image."""
    n_images, classes = scores.shape[:2]
    flat = scores.astype(np.float64).reshape(n_images, classes, -1)
    flat_labels = np.asarray(labels).reshape(n_images, -1)
    return [(flat[n, :, d], int(flat_labels[n, d])) for n in range(n_images) for d in range(flat.shape[2])]


def _reduce(losses, counts, reduction, labels_shape):
    if reduction == "none":
        return np.array(losses).reshape(labels_shape)
    if reduction == "sum":
        return sum(losses)
    return sum(losses) / sum(counts)


def nll_loss(log_probs, labels, weight=None, ignore_index=-100, reduction="mean"):
    """Sample i with label y costs -weight[y] * log_probs_i[y] (0 when y == ignore_index);
    "mean" divides the sum by the sum of weight[y] over the samples not ignored."""
    losses, counts = [], []
    for q, y in _samples(log_probs, labels):
        w = 0.0 if y == ignore_index else (1.0 if weight is None else float(weight[y]))
        losses.append(0.0 if y == ignore_index else -w * q[y])
        counts.append(w)
    return _reduce(losses, counts, reduction, np.shape(labels))


def cross_entropy(logits, labels, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Sample i with label y costs, with q = log softmax of its scores and C classes,

        (1 - s) * w[y] * (-q[y]) + (s / C) * sum over c of w[c] * (-q[c])      (s = label_smoothing)

    0 when y == ignore_index; "mean" divides the sum by the sum of w[y] over the samples not
    ignored (w = weight, all 1 without it)."""
    losses, counts = [], []
    for z, y in _samples(logits, labels):
        classes = len(z)
        w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
        m = max(z)
        q = [zc - m - math.log(sum(math.exp(zk - m) for zk in z)) for zc in z]
        if y == ignore_index:
            losses.append(0.0)
            counts.append(0.0)
            continue
        spread = sum(w[c] * -q[c] for c in range(classes)) / classes
        losses.append((1 - label_smoothing) * w[y] * -q[y] + label_smoothing * spread)
        counts.append(w[y])
    return _reduce(losses, counts, reduction, np.shape(labels))


def mse_loss(x, target, reduction="mean"):
    """(x - target)^2 per element; "mean" averages them, "sum" adds them up, "none" keeps them."""
    errors = [(float(a) - float(b)) ** 2 for a, b in zip(np.ravel(x), np.ravel(target))]
    if reduction == "none":
        return np.array(errors).reshape(np.shape(x))
    return sum(errors) if reduction == "sum" else sum(errors) / len(errors)

"""Softmax and the losses: softmax, log_softmax, cross_entropy, nll_loss, mse_loss, binary_cross_entropy_with_logits."""

import numpy as np

from .. import backends
from .. import device as _device
from ..autograd import Function
from ..tensor import Tensor
from . import checks


class LogSoftmax(Function):
    """log softmax(z) = z - max(z) - log(sum(exp(z - max(z)))), along one axis."""

    @staticmethod
    def check(x, axis):
        x = checks.float_input("log_softmax", x)
        return x, checks.check_axis("log_softmax", x, axis)

    @staticmethod
    def forward(ctx, x, axis):
        xp = _device.array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)      # exp never overflows
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d y_i/d z_j = [i == j] - softmax_j, so dz = g - softmax * sum(g)
        (y,) = ctx.saved_tensors
        xp = _device.array_module(y)
        return grad_output - xp.exp(y) * grad_output.sum(axis=ctx.axis, keepdims=True), None


def log_softmax(x, dim=None, *, axis=None):
    """z - logsumexp(z) along ``dim`` (default -1; NumPy's name ``axis`` works too), with the
    max subtracted first so exp never overflows."""
    return LogSoftmax.apply(x, checks.dim_or_axis("log_softmax", -1, dim=dim, axis=axis))


class Softmax(Function):
    """softmax(z)_i = exp(z_i - max z) / sum_j exp(z_j - max z), along one axis."""

    @staticmethod
    def check(x, axis):
        x = checks.float_input("softmax", x)
        return x, checks.check_axis("softmax", x, axis)

    @staticmethod
    def forward(ctx, x, axis):
        xp = _device.array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d y_i/d z_j = y_i ([i == j] - y_j), so dz = y * (g - sum(g * y))
        (y,) = ctx.saved_tensors
        return y * (grad_output - (grad_output * y).sum(axis=ctx.axis, keepdims=True)), None


def softmax(x, dim=None, *, axis=None):
    """exp(z) / sum(exp(z)) along ``dim`` (default -1; NumPy's name ``axis`` works too), stable."""
    return Softmax.apply(x, checks.dim_or_axis("softmax", -1, dim=dim, axis=axis))


REDUCTIONS = ("mean", "sum", "none")


def loss_options(op, reduction, ignore_index=-100, label_smoothing=0.0):
    """reduction, ignore_index (an int) and label_smoothing (in [0, 1]) checked; shared with the loss layers."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int (a label value to skip), got {ignore_index!r}")
    label_smoothing = checks.number(op, "label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    return reduction, int(ignore_index), label_smoothing


def _check_scores(op, scores, what):
    """Scores (logits or log-probabilities) with the classes on axis 1: (N, C) or (N, C, d1, d2, ...)."""
    scores = checks.float_input(op, scores)
    if scores.ndim < 2:
        raise ValueError(f"{op}: {what} must be (N, classes) or (N, classes, d1, ...), got shape {scores.shape}")
    return scores


def _on_host(values):
    """values (a Tensor, an array, a list) as a NumPy array, or None if they are on a GPU."""
    if isinstance(values, Tensor):
        values = values.data
    if _device.is_array(values) and _device.device_of(values) != "cpu":
        return None
    return np.asarray(values)


def _check_labels(op, scores, labels, ignore_index=None):
    """The labels as int64 on the scores' device, checked without waiting for the GPU: class ids
    of the scores' shape without the class axis 1, each in [0, C) or equal to ignore_index.

    Labels from the host (a list, a NumPy array, a CPU tensor: what a data loader gives)
    are checked there, then copied to the device. Labels already on the GPU are checked
    for dtype and shape only: reading their values would wait for every kernel queued
    before; a label out of range there gives a NaN loss instead (the kernels check it).
    """
    host = _on_host(labels)
    checked = host if host is not None else (labels.data if isinstance(labels, Tensor) else labels)
    if checked.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class ids, got dtype {checked.dtype}")
    expected = scores.shape[:1] + scores.shape[2:]
    if checked.shape != expected:
        raise ValueError(f"{op}: labels must have shape {expected} to match the scores {scores.shape} "
                         f"(their shape without the class axis 1), got {checked.shape}")
    classes = scores.shape[1]
    if host is not None and host.size and (host.min() < 0 or host.max() >= classes):
        counted = host if ignore_index is None else host[host != ignore_index]
        if counted.size and (counted.min() < 0 or counted.max() >= classes):
            skip = "" if ignore_index is None else f" (a label equal to ignore_index={ignore_index} is skipped)"
            raise ValueError(f"{op}: labels must be in [0, {classes - 1}], got values from "
                             f"{int(counted.min())} to {int(counted.max())}{skip}")
    return _device.to_device(checked.astype(np.int64, copy=False), scores.device)


def _check_class_weight(op, scores, weight):
    """weight: None, or one number per class, as an array of the scores' device and dtype."""
    if weight is None:
        return None
    if isinstance(weight, Tensor):
        weight = weight.data
    weight = scores.xp.asarray(weight)
    classes = scores.shape[1]
    if weight.shape != (classes,):
        raise ValueError(f"{op}: weight must hold one number per class, shape ({classes},), got shape {weight.shape}")
    if weight.dtype.kind not in "fiu":
        raise TypeError(f"{op}: weight must hold numbers, got dtype {weight.dtype}")
    return weight.astype(scores.dtype)


class CrossEntropy(Function):
    """Softmax cross-entropy, mean over the batch: loss = -mean_n log softmax(z_n)[label_n].

    The fused op (one kernel for softmax and loss, one for the gradient) that F.cross_entropy
    runs when no option changes the plain mean over a batch of (N, C) logits."""

    @staticmethod
    def check(logits, labels):
        op = "cross_entropy"
        logits = checks.float_input(op, logits)
        checks.check_ndim(op, "logits", logits, 2, "(N, classes)")
        return logits, _check_labels(op, logits, labels)

    @staticmethod
    def forward(ctx, logits, labels):
        ctx.backend = backends.for_array(logits)
        loss, probs = ctx.backend.softmax_cross_entropy_forward(logits, labels)
        ctx.save_for_backward(probs, labels)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        # d loss/d z = (softmax(z) - onehot(label)) / N
        probs, labels = ctx.saved_tensors
        return ctx.backend.softmax_cross_entropy_backward(probs, labels, grad_output), None


def cross_entropy(logits, labels, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy, with PyTorch's options and semantics.

    logits: (N, C), or (N, C, d1, d2, ...) for a class per position (per-pixel
    classification); labels: integer class ids of shape (N,) or (N, d1, d2, ...).
    With q = log_softmax(logits) over the classes (axis 1), sample i (an image, or a
    position of one) with label y costs

        loss_i = (1 - s) * w[y] * (-q_i[y]) + (s / C) * sum over c of w[c] * (-q_i[c])

    with s = label_smoothing (the target puts 1 - s + s/C on y and s/C on every other
    class) and w the per-class ``weight`` (all 1 by default). Samples whose label is
    ignore_index cost 0 and are not counted. reduction="none" returns loss_i per sample,
    "sum" their sum, "mean" (the default) their sum divided by the sum of w[y_i] over
    the counted samples (the number of counted samples when there are no weights).

    The plain case (no weight, no ignored label, mean, no smoothing, (N, C) logits, labels
    from the host) runs the fused softmax cross-entropy kernels; every other case is
    log_softmax followed by nll_loss (and the smoothing term), which is how PyTorch
    defines it too. Labels from the host are checked there; labels already on a GPU only
    for dtype and shape (an out-of-range one gives a NaN loss), so no step waits for the GPU.
    """
    op = "cross_entropy"
    reduction, ignore_index, label_smoothing = loss_options(op, reduction, ignore_index, label_smoothing)
    logits = _check_scores(op, logits, "logits")
    host = _on_host(labels)
    labels = _check_labels(op, logits, labels, ignore_index)
    weight = _check_class_weight(op, logits, weight)
    plain = weight is None and reduction == "mean" and label_smoothing == 0.0 and logits.ndim == 2
    # labels already on a GPU take the general path: whether one is ignore_index cannot be seen
    # there without waiting for the GPU, and the general path gets it right either way
    if plain and host is not None and not (host == ignore_index).any():
        return CrossEntropy.apply(logits, labels)
    log_probs = log_softmax(logits, dim=1)
    loss = nll_loss(log_probs, labels, weight, ignore_index, reduction)
    if label_smoothing == 0.0:
        return loss
    return (1.0 - label_smoothing) * loss + (label_smoothing / logits.shape[1]) * _smoothing_term(
        log_probs, labels, weight, ignore_index, reduction)


def _smoothing_term(log_probs, labels, weight, ignore_index, reduction):
    """sum over c of w[c] * (-q[c]) per counted sample, reduced as nll_loss reduces (mean: over the
    sum of w[y] of the counted samples): the part of label smoothing that spreads over every class."""
    xp = log_probs.xp
    classes = log_probs.shape[1]
    counted = labels != ignore_index
    w = xp.ones((classes,), log_probs.dtype) if weight is None else weight
    per_class = Tensor(w.reshape((1, classes) + (1,) * (log_probs.ndim - 2)))
    per_sample = -(log_probs * per_class).sum(axis=1) * Tensor(counted.astype(log_probs.dtype))
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    total_weight = (w[xp.where(counted, labels, 0)] * counted).sum()     # nll_loss's divisor, on the device
    return per_sample.sum() / Tensor(total_weight)


class NLLLoss(Function):
    """Negative log-likelihood of log-probabilities q: loss_i = -w[y_i] q_i[y_i] per sample, reduced."""

    @staticmethod
    def check(log_probs, labels, weight, ignore_index, reduction):
        op = "nll_loss"
        reduction, ignore_index, _ = loss_options(op, reduction, ignore_index)
        log_probs = _check_scores(op, log_probs, "input")
        labels = _check_labels(op, log_probs, labels, ignore_index)
        weight = _check_class_weight(op, log_probs, weight)
        if weight is None:
            weight = log_probs.xp.ones((log_probs.shape[1],), log_probs.dtype)
        return log_probs, labels, weight, ignore_index, reduction

    @staticmethod
    def forward(ctx, log_probs, labels, weight, ignore_index, reduction):
        ctx.backend = backends.for_array(log_probs)
        n, classes = log_probs.shape[:2]
        samples = labels.reshape(n, -1)                        # (N, D): D positions per image
        loss, counted = ctx.backend.nll_loss_forward(log_probs.reshape(n, classes, -1), samples, weight,
                                                     ignore_index)
        ctx.save_for_backward(samples, weight)
        ctx.ignore_index, ctx.reduction, ctx.shape = ignore_index, reduction, log_probs.shape
        if reduction == "none":
            return loss.reshape(labels.shape)
        total = loss.sum()
        if reduction == "sum":
            return total
        ctx.total_weight = counted.sum()
        with np.errstate(invalid="ignore", divide="ignore"):   # every sample ignored: 0/0 = nan, as PyTorch
            return total / ctx.total_weight

    @staticmethod
    def backward(ctx, grad_output):
        # d loss_i / d q_i[c] = -w[c] where c = y_i (0 for ignored samples), times d(reduction)/d loss_i
        samples, weight = ctx.saved_tensors
        xp = _device.array_module(samples)
        if ctx.reduction == "none":
            dloss = grad_output.reshape(samples.shape)
        elif ctx.reduction == "sum":
            dloss = xp.broadcast_to(grad_output, samples.shape)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                dloss = xp.broadcast_to(grad_output / ctx.total_weight, samples.shape)
        dx = ctx.backend.nll_loss_backward(samples, weight, ctx.ignore_index, dloss.astype(weight.dtype),
                                           ctx.shape[1])
        return dx.reshape(ctx.shape), None, None, None, None


def nll_loss(log_probs, labels, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood, as torch.nn.functional.nll_loss: log_probs (N, C) or (N, C, d1, ...),
    labels (N,) or (N, d1, ...); loss_i = -weight[y_i] * log_probs_i[y_i], 0 for a label equal to
    ignore_index. reduction "mean" divides the sum by the sum of weight[y_i] over the counted
    samples; "sum" and "none" as their names say. cross_entropy = log_softmax, then this."""
    return NLLLoss.apply(log_probs, labels, weight, ignore_index, reduction)


class MSELoss(Function):
    """Squared error, (x - t)^2 per element, reduced by mean (the default), sum or none."""

    @staticmethod
    def check(x, target, reduction):
        op = "mse_loss"
        reduction, _, _ = loss_options(op, reduction)
        x = checks.float_input(op, x)
        if not isinstance(target, Tensor):
            target = Tensor(x.xp.asarray(target, dtype=x.dtype))
        checks.check_float(op, "target", target)
        checks.check_same(op, x, target=target)
        if target.shape != x.shape:
            raise ValueError(f"{op}: target must have the input's shape {x.shape}, got {target.shape} "
                             f"(minicnn does not broadcast a loss's target)")
        return x, target, reduction

    @staticmethod
    def forward(ctx, x, target, reduction):
        ctx.backend = backends.for_array(x)
        squared = ctx.backend.squared_error_forward(x, target)
        ctx.save_for_backward(x, target)
        ctx.reduction = reduction
        if reduction == "none":
            return squared
        return squared.sum() if reduction == "sum" else squared.mean()

    @staticmethod
    def backward(ctx, grad_output):
        # d (x - t)^2 / dx = 2 (x - t) = -d/dt, times d(reduction)/d element (1/count for the mean)
        x, target = ctx.saved_tensors
        xp = _device.array_module(x)
        if ctx.reduction == "none":
            dloss = grad_output
        else:
            dloss = xp.broadcast_to(grad_output / x.size if ctx.reduction == "mean" else grad_output, x.shape)
        dx = ctx.backend.squared_error_backward(x, target, dloss.astype(x.dtype))
        return (dx if ctx.needs_input_grad[0] else None), (-dx if ctx.needs_input_grad[1] else None), None


def mse_loss(x, target, reduction="mean"):
    """Mean squared error, as torch.nn.functional.mse_loss: mean (or sum, or none) of (x - target)^2.
    target has x's shape (a Tensor, which may require a gradient too, or an array)."""
    return MSELoss.apply(x, target, reduction)


class BinaryCrossEntropyWithLogits(Function):
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], in the stable form
    max(z, 0) - z t + log(1 + exp(-|z|))."""

    @staticmethod
    def check(logits, targets):
        op = "binary_cross_entropy_with_logits"
        logits = checks.float_input(op, logits)
        # as _check_labels: checked on the host when they come from there, never read back from a GPU
        host = _on_host(targets)
        targets = host if host is not None else (targets.data if isinstance(targets, Tensor) else targets)
        if targets.shape != logits.shape:
            raise ValueError(f"{op}: targets must have the logits' shape {logits.shape}, got {targets.shape}")
        if host is not None and host.size and (host.min() < 0 or host.max() > 1):
            raise ValueError(f"{op}: targets must lie in [0, 1]")
        return logits, _device.to_device(targets.astype(logits.dtype), logits.device)

    @staticmethod
    def forward(ctx, z, t):
        xp = _device.array_module(z)
        loss = (xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))).mean()
        ctx.save_for_backward(z, t)
        return xp.asarray(loss, dtype=z.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        # d loss/d z = (sigmoid(z) - t) / N
        z, t = ctx.saved_tensors
        xp = _device.array_module(z)
        sig = xp.exp(-xp.logaddexp(0, -z)).astype(z.dtype)     # sigmoid(z), stable
        return (sig - t) * (grad_output / z.size), None


def binary_cross_entropy_with_logits(logits, targets):
    """Mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))], stable form:

        max(z, 0) - z t + log(1 + exp(-|z|))

    targets are 0/1 (or probabilities) of the logits' shape.
    """
    return BinaryCrossEntropyWithLogits.apply(logits, targets)

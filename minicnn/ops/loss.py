"""Softmax and the losses: softmax, log_softmax, cross_entropy, binary_cross_entropy_with_logits."""

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


def log_softmax(x, axis=-1):
    """z - logsumexp(z), with the max subtracted first so exp never overflows."""
    return LogSoftmax.apply(x, axis)


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


def softmax(x, axis=-1):
    """exp(z) / sum(exp(z)), stable."""
    return Softmax.apply(x, axis)


def _on_host(values):
    """values (a Tensor, an array, a list) as a NumPy array, or None if they are on a GPU."""
    if isinstance(values, Tensor):
        values = values.data
    if _device.is_array(values) and _device.device_of(values) != "cpu":
        return None
    return np.asarray(values)


def _check_labels(op, logits, labels):
    """The labels as int64 on the logits' device, checked without waiting for the GPU.

    Labels from the host (a list, a NumPy array, a CPU tensor: what a data loader gives)
    are checked there, then copied to the device. Labels already on the GPU are checked
    for dtype and shape only: reading their values would wait for every kernel queued
    before; a label out of range there gives a NaN loss instead (the kernel checks it).
    """
    host = _on_host(labels)
    checked = host if host is not None else (labels.data if isinstance(labels, Tensor) else labels)
    if checked.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class ids, got dtype {checked.dtype}")
    if checked.shape != (logits.shape[0],):
        raise ValueError(f"{op}: labels must have shape ({logits.shape[0]},) to match the logits, got {checked.shape}")
    classes = logits.shape[1]
    if host is not None and host.size and (host.min() < 0 or host.max() >= classes):
        raise ValueError(f"{op}: labels must be in [0, {classes - 1}], got values from "
                         f"{int(host.min())} to {int(host.max())}")
    return _device.to_device(checked.astype(np.int64, copy=False), logits.device)


class CrossEntropy(Function):
    """Softmax cross-entropy, mean over the batch: loss = -mean_n log softmax(z_n)[label_n]."""

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


def cross_entropy(logits, labels):
    """Softmax cross-entropy, mean over the batch. logits: (N, classes); labels: (N,) ints."""
    return CrossEntropy.apply(logits, labels)


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

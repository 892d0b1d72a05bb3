"""Pooling: max_pool2d (overlapping, as AlexNet's 3/2), avg_pool2d, global_avg_pool2d,
adaptive_avg_pool2d, max_unpool2d.

Padding is an int, an (h, w) pair, a (top, bottom, left, right) tuple, or "same" / "valid";
the strings are resolved against the input's size (minicnn/shapes.py). With ceil_mode the
output size rounds up (shapes.pool_output_size).
"""

import numpy as np

from .. import backends
from .. import device as _device
from ..autograd import Function
from ..shapes import resolve_padding
from ..tensor import Tensor
from . import checks


def pool_hyperparameters(op, kernel_size, stride, padding, every_window_needs_a_pixel=True):
    """kernel and stride (default: the kernel) as (h, w) pairs, padding as (top, bottom, left, right)
    or "same"/"valid", each checked; shared with nn.MaxPool2d and nn.AvgPool2d.

    Padding larger than half the kernel is allowed (PyTorch refuses it), as long as
    the result is defined: when every window must hold a pixel of the image (max
    pooling, and average pooling that does not count the padding), each side's
    padding must be smaller than the kernel, else a window could lie wholly in it.
    """
    kernel = checks.pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else checks.pair(op, "stride", stride, 1)
    padding = checks.padding(op, padding)
    if every_window_needs_a_pixel and not isinstance(padding, str):
        check_padding_below_kernel(op, kernel, padding)
    return kernel, stride, padding


def check_padding_below_kernel(op, kernel, pads):
    top, bottom, left, right = pads
    if max(top, bottom) >= kernel[0] or max(left, right) >= kernel[1]:
        what = "to take the maximum of" if op.lower().startswith("max") else \
            "to average (count_include_pad=False counts only the image's pixels)"
        raise ValueError(f"{op}: padding (top, bottom, left, right) = {pads} must be smaller than the kernel "
                         f"{kernel} on every side: a window lying wholly in the padding would hold no pixel {what}")


def _pool_args(op, x, kernel_size, stride, padding, every_window_needs_a_pixel):
    """The checked input and (kernel, stride, padding as (top, bottom, left, right) for this input)."""
    x = checks.input_4d(op, x)
    kernel, stride, padding = pool_hyperparameters(op, kernel_size, stride, padding, every_window_needs_a_pixel)
    pads = resolve_padding(padding, x.shape[2:], kernel, stride)
    checks.check_window(op, x, kernel, pads)
    return x, kernel, stride, pads


class MaxPool2d(Function):
    """y = the maximum of each window; its gradient goes to the window's (first) maximum."""

    @staticmethod
    def check(x, kernel_size, stride, padding, ceil_mode, return_indices):
        x, kernel, stride, pads = _pool_args("max_pool2d", x, kernel_size, stride, padding, True)
        return x, kernel, stride, pads, bool(ceil_mode), bool(return_indices)

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode, return_indices):
        ctx.backend = backends.for_array(x)
        y, argmax = ctx.backend.max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        return (y, argmax) if return_indices else y

    @staticmethod
    def backward(ctx, grad_output):
        # d y/d x = 1 for the winner of each window, 0 for the rest
        (argmax,) = ctx.saved_tensors
        dx = ctx.backend.max_pool2d_backward(grad_output, argmax, ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding)
        return dx, None, None, None, None, None


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
    """Max over each window (overlapping when stride < kernel, as AlexNet's 3/2 pooling).

    stride defaults to kernel_size; padding (an int, (h, w), (top, bottom, left, right),
    "same" or "valid") counts as -inf, and must be smaller than the kernel on each side.
    ceil_mode=True rounds the output size up (Caffe's rule), dropping a last window that
    would start past the input and its leading padding (PyTorch's). Ties go to the first
    maximum in row-major window order; the gradient goes to that element only.
    return_indices=True also returns, as an int64 tensor of the output's shape, the flat
    index h*W + w of each maximum in its (N, C) plane (PyTorch's; F.max_unpool2d reads it).
    """
    return MaxPool2d.apply(x, kernel_size, stride, padding, ceil_mode, return_indices)


class AvgPool2d(Function):
    """y = the mean of each window: its sum over a divisor, kH*kW when zero padding counts."""

    @staticmethod
    def check(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
        count_include_pad = bool(count_include_pad)
        x, kernel, stride, pads = _pool_args("avg_pool2d", x, kernel_size, stride, padding, not count_include_pad)
        return x, kernel, stride, pads, bool(ceil_mode), count_include_pad

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode, count_include_pad):
        ctx.backend = backends.for_array(x)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        ctx.count_include_pad = count_include_pad
        return ctx.backend.avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad)

    @staticmethod
    def backward(ctx, grad_output):
        # every pixel of a window gets 1/divisor of the window's gradient
        dx = ctx.backend.avg_pool2d_backward(grad_output, ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding,
                                             ctx.count_include_pad)
        return dx, None, None, None, None, None


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over each window. stride defaults to kernel_size; padding as max_pool2d's.

    count_include_pad=True (PyTorch's default): zero padding is counted, the divisor is
    kH*kW (less where a ceil_mode window reaches past the padded input). False: the
    divisor counts only the image's pixels in the window (Keras's and ONNX's default;
    Keras's AveragePooling2D(padding="same") is avg_pool2d(..., padding="same",
    count_include_pad=False)). Padding may exceed half the kernel where zero padding
    counts; otherwise it must be smaller than the kernel on each side.
    """
    return AvgPool2d.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad)


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): the mean of each channel's plane."""
    x = checks.input_4d("global_avg_pool2d", x)
    return x.mean(axis=(2, 3))


# --------------------------------------------------------------------------- adaptive average pooling
def adaptive_pool_matrix(in_size, out_size):
    """(out_size, in_size) matrix whose row i averages input bins [floor(i*in/out), ceil((i+1)*in/out)),
    PyTorch's adaptive pooling windows (they may overlap, and repeat inputs when out_size > in_size)."""
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)          # ceil division
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_output_size(op, output_size):
    """output_size (an int or an (h, w) pair of positive ints) checked; shared with nn.AdaptiveAvgPool2d."""
    return checks.pair(op, "output_size", output_size, 1)


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (oh, ow), whatever the input size, as
    torch.nn.functional.adaptive_avg_pool2d: torchvision puts one before the classifier
    of VGG (7x7), AlexNet (6x6) and ResNet (1x1).

    Adaptive average pooling is linear and separable, so it is two matrix products,
    y = A_h x A_w^T per plane (A: adaptive_pool_matrix), whose gradients the autograd
    already knows. When the input already has the output size it is returned as it is.
    """
    op = "adaptive_avg_pool2d"
    x = checks.input_4d(op, x)
    oh, ow = adaptive_output_size(op, output_size)
    n, c, h, w = x.shape
    if (h, w) == (oh, ow):
        return x
    xp = x.xp
    a_h = Tensor(xp.asarray(adaptive_pool_matrix(h, oh).T, dtype=x.dtype))   # (h, oh)
    a_w = Tensor(xp.asarray(adaptive_pool_matrix(w, ow).T, dtype=x.dtype))   # (w, ow)
    y = (x.reshape(n * c * h, w) @ a_w).reshape(n, c, h, ow)                # pool along the width
    y = y.transpose(0, 1, 3, 2).reshape(n * c * ow, h) @ a_h                # then along the height
    return y.reshape(n, c, ow, oh).transpose(0, 1, 3, 2)


# --------------------------------------------------------------------------- max unpooling
class MaxUnpool2d(Function):
    """The inverse of max pooling with return_indices: each value goes back to where its
    maximum was, every other position is 0."""

    @staticmethod
    def check(x, indices, kernel_size, stride, padding, output_size):
        op = "max_unpool2d"
        x = checks.input_4d(op, x)
        indices = indices.data if isinstance(indices, Tensor) else indices
        if not _device.is_array(indices) or indices.dtype.kind not in "iu":
            raise TypeError(f"{op}: indices must be the integer tensor max_pool2d(..., return_indices=True) returns")
        if tuple(indices.shape) != x.shape:
            raise ValueError(f"{op}: indices must have the input's shape {x.shape}, got {tuple(indices.shape)}")
        kernel, stride, pads = pool_hyperparameters(op, kernel_size, stride, padding, False)
        if isinstance(pads, str):
            raise ValueError(f"{op}: padding must be numbers (the padding max_pool2d used), got {pads!r}")
        if output_size is None:
            top, bottom, left, right = pads
            # the input size max pooling (floor mode) maps back from: PyTorch's default
            out = ((x.shape[2] - 1) * stride[0] - top - bottom + kernel[0],
                   (x.shape[3] - 1) * stride[1] - left - right + kernel[1])
        else:
            out = tuple(output_size)[-2:]
            if len(out) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in out):
                raise ValueError(f"{op}: output_size must end with (H, W), positive ints, got {output_size!r}")
        out = (int(out[0]), int(out[1]))
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= out[0] * out[1]):
            raise ValueError(f"{op}: indices must lie in [0, {out[0] * out[1]}) for an output of {out[0]}x{out[1]}, "
                             f"got values from {int(indices.min())} to {int(indices.max())}")
        return x, indices.astype(np.int64), out

    @staticmethod
    def forward(ctx, x, indices, out):
        xp = _device.array_module(x)
        n, c = x.shape[:2]
        planes = xp.arange(n * c)[:, None]
        y = xp.zeros((n * c, out[0] * out[1]), dtype=x.dtype)
        y[planes, indices.reshape(n * c, -1)] = x.reshape(n * c, -1)
        ctx.save_for_backward(indices)
        return y.reshape(n, c, out[0], out[1])

    @staticmethod
    def backward(ctx, grad_output):
        # each input value went to one position: its gradient is read back from there (a gather)
        (indices,) = ctx.saved_tensors
        xp = _device.array_module(grad_output)
        n, c = indices.shape[:2]
        planes = xp.arange(n * c)[:, None]
        dx = grad_output.reshape(n * c, -1)[planes, indices.reshape(n * c, -1)]
        return dx.reshape(indices.shape), None, None


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Put each value of x back at the position its max pooling took it from (indices:
    max_pool2d(..., return_indices=True)'s), zeros elsewhere, as torch.nn.functional.max_unpool2d.
    output_size (H, W) defaults to the size that pooling (floor mode) maps to x's size."""
    return MaxUnpool2d.apply(x, indices, kernel_size, stride, padding, output_size)

"""Pooling: max_pool2d (overlapping, as AlexNet's 3/2), avg_pool2d, global_avg_pool2d."""

from .. import backends
from ..autograd import Function
from . import checks


def pool_hyperparameters(op, kernel_size, stride, padding):
    """kernel, stride (default: the kernel) and padding as (h, w) pairs, each checked; shared with nn.MaxPool2d."""
    kernel = checks.pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else checks.pair(op, "stride", stride, 1)
    padding = checks.pair(op, "padding", padding, 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding


def _pool_args(op, x, kernel_size, stride, padding):
    x = checks.input_4d(op, x)
    kernel, stride, padding = pool_hyperparameters(op, kernel_size, stride, padding)
    checks.check_window(op, x, kernel, padding)
    return x, kernel, stride, padding


class MaxPool2d(Function):
    """y = the maximum of each window; its gradient goes to the window's (first) maximum."""

    @staticmethod
    def check(x, kernel_size, stride, padding):
        return _pool_args("max_pool2d", x, kernel_size, stride, padding)

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.backend = backends.for_array(x)
        y, argmax = ctx.backend.max_pool2d_forward(x, kernel, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d y/d x = 1 for the winner of each window, 0 for the rest
        (argmax,) = ctx.saved_tensors
        dx = ctx.backend.max_pool2d_backward(grad_output, argmax, ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding)
        return dx, None, None, None


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window (overlapping when stride < kernel, as AlexNet's 3/2 pooling).

    stride defaults to kernel_size; padding counts as -inf. Ties go to the first
    maximum in row-major window order; the gradient goes to that element only.
    """
    return MaxPool2d.apply(x, kernel_size, stride, padding)


class AvgPool2d(Function):
    """y = the mean of each window, zero padding counted (divisor kH*kW)."""

    @staticmethod
    def check(x, kernel_size, stride, padding):
        return _pool_args("avg_pool2d", x, kernel_size, stride, padding)

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.backend = backends.for_array(x)
        ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding = x.shape, kernel, stride, padding
        return ctx.backend.avg_pool2d_forward(x, kernel, stride, padding)

    @staticmethod
    def backward(ctx, grad_output):
        # every pixel of a window gets 1/(kH*kW) of the window's gradient
        dx = ctx.backend.avg_pool2d_backward(grad_output, ctx.x_shape, ctx.kernel, ctx.stride, ctx.padding)
        return dx, None, None, None


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window; zero padding is counted (divisor kH*kW, PyTorch's default)."""
    return AvgPool2d.apply(x, kernel_size, stride, padding)


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): the mean of each channel's plane."""
    x = checks.input_4d("global_avg_pool2d", x)
    return x.mean(axis=(2, 3))

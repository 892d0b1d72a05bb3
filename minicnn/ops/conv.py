"""Convolution and fully connected layers: conv2d, linear.

The arithmetic is in the backends: backends/reference.py says, in NumPy, which
GEMMs compute each gradient; backends/kernels.py runs the same GEMMs around the
csrc kernels (im2col, col2im, bias).
"""

import numpy as np

from .. import backends
from ..autograd import Function
from ..shapes import resolve_padding
from . import checks


def conv_hyperparameters(op, stride, padding, groups, dilation):
    """stride and dilation as (h, w) pairs, padding as (top, bottom, left, right) or "same"/"valid",
    groups as an int, each checked; shared with nn.Conv2d."""
    stride, padding = checks.pair(op, "stride", stride, 1), checks.padding(op, padding)
    dilation = checks.pair(op, "dilation", dilation, 1)
    if padding == "same" and stride != (1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride} (PyTorch refuses it too: "
                         f"with a stride the output cannot keep the input's size); give the padding as numbers")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return stride, padding, int(groups), dilation


class Conv2d(Function):
    """2-D cross-correlation, NCHW:
    y[n, o, i, j] = b[o] + sum over c, ki, kj of w[o, c, ki, kj] x[n, c, i*sh - top + ki*dh, j*sw - left + kj*dw]."""

    @staticmethod
    def check(x, weight, bias, stride, padding, groups, dilation):
        op = "conv2d"
        x = checks.input_4d(op, x)
        weight = checks.as_tensor(op, "weight", weight)
        checks.check_ndim(op, "weight", weight, 4, "(O, C/groups, kH, kW)")
        bias = None if bias is None else checks.as_tensor(op, "bias", bias)
        checks.check_same(op, x, weight=weight, bias=bias)
        stride, padding, groups, dilation = conv_hyperparameters(op, stride, padding, groups, dilation)
        out_ch, in_per_group = weight.shape[0], weight.shape[1]
        if x.shape[1] % groups or out_ch % groups:
            raise ValueError(f"{op}: groups={groups} must divide both the input channels ({x.shape[1]}) "
                             f"and the output channels ({out_ch})")
        if in_per_group * groups != x.shape[1]:
            raise ValueError(f"{op}: weight expects {in_per_group * groups} input channels "
                             f"({in_per_group} per group x {groups} groups), input has {x.shape[1]}"
                             + checks.channels_last_hint(x, in_per_group * groups))
        if bias is not None and bias.shape != (out_ch,):
            raise ValueError(f"{op}: bias must have shape ({out_ch},), got {bias.shape}")
        pads = resolve_padding(padding, x.shape[2:], weight.shape[2:], stride, dilation)
        checks.check_window(op, x, weight.shape[2:], pads, dilation)
        return x, weight, bias, stride, pads, groups, dilation

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, groups, dilation):
        ctx.backend = backends.for_array(x)
        ctx.stride, ctx.padding, ctx.groups, ctx.dilation = stride, padding, groups, dilation
        # what the backend keeps for the weight gradient (the kernels' im2col columns, when small),
        # saved with x and the weight so that it is freed with them after backward; only when
        # that gradient will be computed, so that inference and frozen layers keep nothing
        kept = {} if ctx.needs_input_grad[1] else None
        y = ctx.backend.conv2d_forward(x, weight, bias, stride, padding, groups, dilation, keep=kept)
        ctx.save_for_backward(x, weight, kept)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, kept = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx, dw, db = ctx.backend.conv2d_backward(x, weight, grad_output, ctx.stride, ctx.padding, ctx.groups,
                                                 ctx.dilation, need_x, need_w, need_b, kept=kept)
        return dx, dw, db, None, None, None, None


def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1, dilation=1):
    """2-D cross-correlation, NCHW. weight: (O, C/groups, kH, kW); bias: (O,).

    stride and dilation: an int or an (h, w) pair; dilation d spaces the kernel's taps d
    pixels apart (PyTorch's ``dilation``). padding: an int, an (h, w) pair, a (top, bottom,
    left, right) tuple, "valid" (none) or "same" (stride 1 only: the output keeps the
    input's size; the padding is dH*(kH-1) rows, the odd one at the bottom, as PyTorch).
    Output size: floor((H + top + bottom - dH*(kH-1) - 1) / stride) + 1, likewise the width;
    with dilation 1 and padding p, floor((H + 2p - kH) / stride) + 1. With groups=2 the
    channels split into two independent towers, as AlexNet's two GPUs.
    """
    return Conv2d.apply(x, weight, bias, stride, padding, groups, dilation)


class Linear(Function):
    """y = x w^T + b, with x: (N, in), w: (out, in) (PyTorch's layout), b: (out,)."""

    @staticmethod
    def check(x, weight, bias):
        op = "linear"
        x = checks.float_input(op, x)
        checks.check_ndim(op, "input", x, 2, "(N, in_features)")
        weight = checks.as_tensor(op, "weight", weight)
        checks.check_ndim(op, "weight", weight, 2, "(out_features, in_features)")
        bias = None if bias is None else checks.as_tensor(op, "bias", bias)
        checks.check_same(op, x, weight=weight, bias=bias)
        if weight.shape[1] != x.shape[1]:
            raise ValueError(f"{op}: weight expects {weight.shape[1]} input features, input has {x.shape[1]}")
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        return x, weight, bias

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.backend = backends.for_array(x)
        ctx.save_for_backward(x, weight)
        return ctx.backend.linear_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        # dx = dy w,  dw = dy^T x,  db = sum over the batch of dy
        x, weight = ctx.saved_tensors
        return ctx.backend.linear_backward(x, weight, grad_output, *ctx.needs_input_grad)


def linear(x, weight, bias=None):
    """y = x weight^T + bias, with x: (N, in), weight: (out, in) (PyTorch's layout)."""
    return Linear.apply(x, weight, bias)

"""Activations and dropout: relu, leaky_relu, sigmoid, tanh, dropout, dropout2d."""

from .. import backends
from .. import device as _device
from .. import random as _random
from ..autograd import Function
from ..tensor import Tensor
from . import checks


class LeakyReLU(Function):
    """y = x for x > 0, negative_slope * x otherwise."""

    @staticmethod
    def check(x, negative_slope):
        return checks.float_input("leaky_relu", x), checks.number("leaky_relu", "negative_slope", negative_slope)

    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.backend = backends.for_array(x)
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return ctx.backend.relu_forward(x, negative_slope)

    @staticmethod
    def backward(ctx, grad_output):
        # dy/dx = 1 for x > 0, negative_slope otherwise (the subgradient at 0 is the slope)
        (x,) = ctx.saved_tensors
        return ctx.backend.relu_backward(x, grad_output, ctx.negative_slope), None


class ReLU(LeakyReLU):
    """y = max(x, 0): a LeakyReLU of slope 0, under its own name in the graph."""


def leaky_relu(x, negative_slope=0.01):
    """y = x for x > 0, negative_slope * x otherwise."""
    return LeakyReLU.apply(x, negative_slope)


def relu(x):
    """y = max(x, 0); the gradient at 0 is taken as 0."""
    return ReLU.apply(x, 0.0)


class Sigmoid(Function):
    @staticmethod
    def check(x):
        return (checks.float_input("sigmoid", x),)

    @staticmethod
    def forward(ctx, x):
        xp = _device.array_module(x)
        y = xp.exp(-xp.logaddexp(0, -x)).astype(x.dtype)    # 1 / (1 + exp(-x)), without overflow
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d sigmoid(x)/dx = y (1 - y)
        (y,) = ctx.saved_tensors
        return grad_output * y * (1 - y)


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow; d/dx = y (1 - y)."""
    return Sigmoid.apply(x)


class Tanh(Function):
    @staticmethod
    def check(x):
        return (checks.float_input("tanh", x),)

    @staticmethod
    def forward(ctx, x):
        y = _device.array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        # d tanh(x)/dx = 1 - tanh(x)^2
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y * y)


def tanh(x):
    """d tanh(x)/dx = 1 - tanh(x)^2."""
    return Tanh.apply(x)


def dropout_probability(op, p):
    """p checked to be a number in [0, 1]; shared with nn.Dropout."""
    p = checks.number(op, "p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    return p


class Dropout(Function):
    """Inverted dropout: y = x / (1 - p) where the mask keeps x, 0 where it drops it."""

    @staticmethod
    def check(x, p, seed, offset):
        op = "dropout"
        x = checks.float_input(op, x)
        p = dropout_probability(op, p)
        seed = _random.next_seed() if seed is None else int(seed) & 0xFFFFFFFF
        offset = _random.dropout_offset(x.shape) if offset is None else int(offset)
        if offset < 0:
            raise ValueError(f"{op}: offset must be >= 0, got {offset}")
        return x, p, seed, offset

    @staticmethod
    def forward(ctx, x, p, seed, offset):
        ctx.backend = backends.for_array(x)
        ctx.threshold, ctx.scale = _random.dropout_threshold_and_scale(p, x.dtype)
        ctx.seed, ctx.offset = seed, offset
        return ctx.backend.dropout_forward(x, ctx.threshold, ctx.scale, seed, offset)

    @staticmethod
    def backward(ctx, grad_output):
        # dy/dx = 1/(1-p) where kept, 0 where dropped: the same mask, drawn again from the same seed and offset
        grad = ctx.backend.dropout_backward(grad_output, ctx.threshold, ctx.scale, ctx.seed, ctx.offset)
        return grad, None, None, None


def dropout(x, p=0.5, training=True, seed=None, offset=None):
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p).

    Identity when not training, which matches the paper's "multiply the outputs
    by 0.5 at test time". The mask is a hash of (seed, element index); the seed
    is drawn from minicnn's generator (mc.manual_seed) unless given, so every
    device draws the same mask. The element index counts from ``offset``: by
    default the place of x's first element in the global batch (0 unless a
    data-parallel rank's slice of it, see mc.random.first_sample), so N ranks
    draw between them the mask one process would.
    """
    if not training or p == 0.0:
        Dropout.check(x, p, 0, offset)   # the same argument checks, then the identity
        return x
    return Dropout.apply(x, p, seed, offset)


def dropout2d(x, p=0.5, training=True, seed=None):
    """Channel dropout (torch.nn.functional.dropout2d): each (image, channel) plane of x: (N, C, H, W)
    is zeroed with probability p, the others scaled by 1/(1-p); identity when not training.

    The mask is dropout's own (the same counter-based hash, the same seed rules), drawn
    over an (N, C, 1, 1) tensor of ones and broadcast over H and W: x * dropout(ones).
    Its gradient is the same mask times the incoming gradient (the product rule, with the
    mask a constant), so channel dropout needs no kernel of its own.
    """
    op = "dropout2d"
    x = checks.input_4d(op, x)
    p = dropout_probability(op, p)
    if not training or p == 0.0:
        return x
    ones = Tensor(x.xp.ones(x.shape[:2] + (1, 1), dtype=x.dtype))
    return x * Dropout.apply(ones, p, seed, None)   # numbered from the batch's first sample, as dropout

"""The ops behind the Tensor methods: arithmetic, reductions, shapes, indexing, devices; cat and stack.

Each works on NumPy and CuPy arrays alike (``xp`` is whichever module holds the
array). The comment above each backward says which derivative it computes.
"""

import numpy as np

from .. import device as _device
from ..autograd import Function
from ..tensor import Tensor
from . import checks


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


# --------------------------------------------------------------------------- arithmetic
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, grad):
        # d(a+b)/da = d(a+b)/db = 1, summed over the axes broadcasting repeated
        a_shape, b_shape = ctx.shapes
        return unbroadcast(grad, a_shape), unbroadcast(grad, b_shape)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, grad):
        # d(a-b)/da = 1, d(a-b)/db = -1
        a_shape, b_shape = ctx.shapes
        return unbroadcast(grad, a_shape), unbroadcast(-grad, b_shape)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        # d(ab)/da = b, d(ab)/db = a
        a, b = ctx.saved_tensors
        da = unbroadcast(grad * b, a.shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(grad * a, b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        a, b = ctx.saved_tensors
        da = unbroadcast(grad / b, a.shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-grad * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    @staticmethod
    def check(x, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.integer, np.floating)):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(exponent).__name__}")
        return x, exponent

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return x ** exponent

    @staticmethod
    def backward(ctx, grad):
        # d(x^n)/dx = n x^(n-1)
        (x,) = ctx.saved_tensors
        return grad * ctx.exponent * x ** (ctx.exponent - 1), None


class MatMul(Function):
    """a @ b with NumPy's (and PyTorch's) rules: 2-D matrices multiply; leading axes are a batch
    that broadcasts ((B, n, k) @ (B, k, m), (B, n, k) @ (k, m), ...); a 1-D operand is a vector
    (a row on the left, a column on the right) whose axis is dropped from the result."""

    @staticmethod
    def check(a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a.shape} and {b.shape}")
        inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if a.shape[-1] != inner_b:
            raise ValueError(f"matmul: inner dimensions differ, {a.shape} @ {b.shape} "
                             f"({a.shape[-1]} columns against {inner_b} rows)")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: the batch dimensions {a.shape[:-2]} and {b.shape[:-2]} of {a.shape} @ "
                             f"{b.shape} do not broadcast") from None
        return a, b

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        # C = A B:  dA = dC B^T,  dB = A^T dC, per batch entry, summed over the entries a broadcast repeated;
        # a vector is a 1-row (left) or 1-column (right) matrix for the products
        a, b = ctx.saved_tensors
        xp = _device.array_module(grad)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            grad = xp.expand_dims(grad, -2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            grad = xp.expand_dims(grad, -1)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(grad @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            db = unbroadcast(xp.swapaxes(a2, -1, -2) @ grad, b2.shape).reshape(b.shape)
        return da, db


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = _device.array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        # d exp(x)/dx = exp(x)
        (y,) = ctx.saved_tensors
        return grad * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _device.array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        # d log(x)/dx = 1/x
        (x,) = ctx.saved_tensors
        return grad / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = _device.array_module(x).sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        # d sqrt(x)/dx = 1 / (2 sqrt(x))
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return abs(x)

    @staticmethod
    def backward(ctx, grad):
        # d|x|/dx = sign(x), taken as 0 at 0 (as PyTorch)
        (x,) = ctx.saved_tensors
        return grad * _device.array_module(x).sign(x)


class Clamp(Function):
    @staticmethod
    def check(x, low, high):
        if low is None and high is None:
            raise ValueError("clamp: give at least one of min and max")
        if low is not None and high is not None and low > high:
            raise ValueError(f"clamp: min ({low}) must not exceed max ({high})")
        return x, low, high

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return _device.array_module(x).clip(x, low, high).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        # 1 where min <= x <= max (the gradient passes), 0 where x was clipped
        (x,) = ctx.saved_tensors
        inside = _device.array_module(x).ones(x.shape, dtype=bool)
        if ctx.low is not None:
            inside &= x >= ctx.low
        if ctx.high is not None:
            inside &= x <= ctx.high
        return grad * inside, None, None


# --------------------------------------------------------------------------- reductions
def _axes(axis, ndim):
    """axis (None, an int or a tuple) as a tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {axis!r} is out of range for a {ndim}-D tensor")
    return tuple(int(a) % max(ndim, 1) for a in axes)


def _expand_to(grad, shape, axes, keepdims):
    """The gradient of a reduction over ``axes``, broadcast back to the input's shape."""
    xp = _device.array_module(grad)
    if not keepdims:
        for a in sorted(axes):
            grad = xp.expand_dims(grad, a)
    return xp.broadcast_to(grad, shape)


class Sum(Function):
    @staticmethod
    def check(x, axis, keepdims):
        return x, _axes(axis, x.ndim), bool(keepdims)

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, axes, keepdims
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        # every summed element gets the gradient of its sum
        return _expand_to(grad, ctx.shape, ctx.axes, ctx.keepdims).copy(), None, None


class Mean(Function):
    @staticmethod
    def check(x, axis, keepdims):
        return x, _axes(axis, x.ndim), bool(keepdims)

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, axes, keepdims
        ctx.count = int(np.prod([x.shape[a] for a in axes]))
        return x.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        # every averaged element gets 1/count of the gradient of its mean
        return _expand_to(grad / max(ctx.count, 1), ctx.shape, ctx.axes, ctx.keepdims).copy(), None, None


class Max(Function):
    """The largest value along an axis (or of all); the gradient goes to the first maximum only."""

    pick = "argmax"

    @staticmethod
    def check(x, axis, keepdims):
        if axis is not None:
            if isinstance(axis, tuple):
                raise TypeError("max/min: axis must be None or one int")
            axis = _axes(axis, x.ndim)[0]
        return x, axis, bool(keepdims)

    @staticmethod
    def forward(ctx, x, axis, keepdims):
        if x.size == 0:
            raise ValueError(f"{ctx.pick[3:]}: the tensor is empty")
        index = getattr(x, ctx.pick)(axis=axis)
        xp = _device.array_module(x)
        if axis is None:
            y = x.reshape(-1)[index]
            y = y.reshape((1,) * x.ndim) if keepdims else y
        else:
            y = xp.take_along_axis(x, xp.expand_dims(index, axis), axis)
            y = y if keepdims else y.squeeze(axis)
        ctx.save_for_backward(index)
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        return y

    @staticmethod
    def backward(ctx, grad):
        # d max/dx = 1 at the (first) winning element, 0 elsewhere
        (index,) = ctx.saved_tensors
        xp = _device.array_module(grad)
        dx = xp.zeros(ctx.shape, dtype=grad.dtype)
        if ctx.axis is None:
            dx.reshape(-1)[index] = grad.reshape(())
            return dx, None, None
        axis = ctx.axis
        g = grad if ctx.keepdims else xp.expand_dims(grad, axis)
        positions = xp.arange(ctx.shape[axis]).reshape([-1 if a == axis else 1 for a in range(len(ctx.shape))])
        return xp.where(positions == xp.expand_dims(index, axis), g, 0).astype(grad.dtype), None, None


class Min(Max):
    """The smallest value along an axis (or of all); the gradient goes to the first minimum only."""

    pick = "argmin"


# --------------------------------------------------------------------------- shapes and indexing
class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def check(x, axes):
        axes = tuple(axes) or tuple(reversed(range(x.ndim)))
        if sorted(int(a) % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes")
        return x, axes

    @staticmethod
    def forward(ctx, x, axes):
        ctx.inverse = tuple(int(i) for i in np.argsort([a % x.ndim for a in axes]))
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        # a transpose's gradient is the inverse transpose
        return grad.transpose(ctx.inverse), None


class GetItem(Function):
    @staticmethod
    def check(x, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return x, index

    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        # each selected element gets its gradient; one selected twice (by an integer array) gets both
        xp = _device.array_module(grad)
        full = xp.zeros(ctx.shape, dtype=grad.dtype)
        if _selects_each_element_once(ctx.index):
            full[ctx.index] = grad
        elif xp is np:
            np.add.at(full, ctx.index, grad)
        else:
            import cupyx
            cupyx.scatter_add(full, ctx.index, grad)
        return full, None


def _selects_each_element_once(index):
    """Basic indexing (ints, slices, None, ...) and boolean masks never pick an element twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice))
               or (hasattr(p, "dtype") and p.dtype == bool) for p in parts)


class Cat(Function):
    @staticmethod
    def check(axis, *tensors):
        _check_joined("cat", tensors)
        ndim = tensors[0].ndim
        if ndim == 0:
            raise ValueError("cat: zero-dimensional tensors cannot be concatenated (use stack)")
        axis = _axes(axis, ndim)[0]
        for i, t in enumerate(tensors):
            if t.ndim != ndim or any(t.shape[a] != tensors[0].shape[a] for a in range(ndim) if a != axis):
                raise ValueError(f"cat: tensor {i} has shape {t.shape}, which differs from {tensors[0].shape} "
                                 f"outside axis {axis}")
        return (axis,) + tuple(tensors)

    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis, ctx.sizes = axis, [a.shape[axis] for a in arrays]
        return _device.array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        # each input gets its own slice of the gradient
        pieces, start = [], 0
        for size in ctx.sizes:
            index = [slice(None)] * grad.ndim
            index[ctx.axis] = slice(start, start + size)
            pieces.append(grad[tuple(index)])
            start += size
        return (None,) + tuple(pieces)


class Stack(Function):
    @staticmethod
    def check(axis, *tensors):
        _check_joined("stack", tensors)
        for i, t in enumerate(tensors):
            if t.shape != tensors[0].shape:
                raise ValueError(f"stack: tensor {i} has shape {t.shape}, tensor 0 has {tensors[0].shape}")
        axis = _axes(axis, tensors[0].ndim + 1)[0]
        return (axis,) + tuple(tensors)

    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis, ctx.count = axis, len(arrays)
        return _device.array_module(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        # input i gets the gradient's i-th slice along the new axis
        index = [slice(None)] * grad.ndim
        pieces = []
        for i in range(ctx.count):
            index[ctx.axis] = i
            pieces.append(grad[tuple(index)])
        return (None,) + tuple(pieces)


def _check_joined(op, tensors):
    if not tensors:
        raise ValueError(f"{op}: needs at least one tensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: item {i} must be a minicnn Tensor, got {type(t).__name__}")
        if t.device != tensors[0].device or t.dtype != tensors[0].dtype:
            raise ValueError(f"{op}: tensor {i} is {t.dtype} on {t.device}, tensor 0 is "
                             f"{tensors[0].dtype} on {tensors[0].device}")


def cat(tensors, dim=None, *, axis=None):
    """Join tensors along an existing axis, ``dim`` (default 0) or ``axis`` (torch.cat, numpy.concatenate)."""
    return Cat.apply(checks.dim_or_axis("cat", 0, dim=dim, axis=axis), *tensors)


def stack(tensors, dim=None, *, axis=None):
    """Join tensors of one shape along a new axis, ``dim`` (default 0) or ``axis`` (torch.stack, numpy.stack)."""
    return Stack.apply(checks.dim_or_axis("stack", 0, dim=dim, axis=axis), *tensors)


def flatten(x):
    """(N, ...) -> (N, everything else)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"flatten: input must be a minicnn Tensor, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError("flatten: input needs a batch dimension, got a 0-d tensor")
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- devices and dtypes
class ToDevice(Function):
    @staticmethod
    def check(x, device):
        _device.check_device_name(device)
        return x, device

    @staticmethod
    def forward(ctx, x, device):
        ctx.source = _device.device_of(x)
        return _device.to_device(x, device)

    @staticmethod
    def backward(ctx, grad):
        # the gradient goes back to where the input was
        return _device.to_device(grad, ctx.source), None


class AsType(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.dtype), None

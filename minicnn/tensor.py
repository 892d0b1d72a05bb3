"""Tensor and a small define-by-run autograd, in the spirit of micrograd.

Every operation on Tensors records, in its output, the tensors it was computed
from (``_parents``) and a function that turns the output's gradient into the
parents' gradients (``_backward``). ``loss.backward()`` walks that graph in
reverse topological order and adds each parent's share into its gradient, so a
tensor used twice gets the sum of both contributions.

Arrays are NumPy arrays on the CPU and CuPy arrays on a GPU. The arithmetic
here only uses functions that both libraries share (``xp`` below is whichever
module holds the array), so the same code serves both devices.
"""

import contextlib

import numpy as np

from . import device as _device

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded: outputs never require grad."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    return _grad_enabled


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``Tensor(ndarray)`` keeps the array's dtype (float64 stays float64, which
    gradient checks need); Python numbers and lists become float32.
    """

    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # a NumPy scalar (e.g. from a full reduction) keeps its dtype
            data = np.asarray(data)
        if not _device.is_array(data):
            data = np.asarray(data, dtype=dtype or np.float32)
        elif dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._op = ""

    # ----------------------------------------------------------------- graph
    @classmethod
    def _from_op(cls, data, parents, backward, op=""):
        """The output of an op: records the graph when a parent needs a gradient.

        ``backward(grad_out)`` returns one gradient per parent (None where a
        parent needs none); parents may contain None for absent arguments.
        """
        out = cls(data)
        parents = tuple(p for p in parents if p is not None)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
            out._op = op
        return out

    def backward(self, grad=None, retain_graph=False):
        """Compute the gradient of this tensor with respect to every leaf.

        Leaves (tensors created by the user, e.g. parameters) get ``.grad``;
        gradients are added to what is already there, as in PyTorch.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad")
        xp = self.xp
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a single-element tensor, got shape {self.shape}")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): gradient shape {grad.shape} does not match tensor shape {self.shape}")

        order, seen = [], set()

        def visit(node):  # depth-first topological sort
            if id(node) in seen:
                return
            seen.add(id(node))
            for parent in node._parents:
                visit(parent)
            order.append(node)

        visit(self)
        grads = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if not node._parents:  # a leaf: keep its gradient
                node.grad = g if node.grad is None else node.grad + g
                continue
            parent_grads = node._backward(g)
            if not isinstance(parent_grads, tuple):
                parent_grads = (parent_grads,)
            for parent, pg in zip(node._parents, parent_grads):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:  # free the saved arrays as soon as they are used
                node._parents, node._backward = (), None

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------ properties
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return int(self.data.size)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return _device.device_of(self.data)

    @property
    def xp(self):
        return _device.array_module(self.data)

    def __len__(self):
        return self.data.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({self.numpy()!r}{dev}{grad})"

    def numpy(self):
        """A NumPy copy of the data, from any device."""
        return _device.to_numpy(self.data).copy()

    def item(self):
        return self.numpy().item()

    def to(self, device):
        """This tensor on ``device`` ("cpu" or "cuda"); gradients flow back across."""
        if device == self.device:
            return self
        source = self.device
        moved = _device.to_device(self.data, device)
        return Tensor._from_op(moved, (self,), lambda g: _device.to_device(g, source), op="to")

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def astype(self, dtype):
        old = self.data.dtype
        return Tensor._from_op(self.data.astype(dtype), (self,), lambda g: g.astype(old), op="astype")

    # ------------------------------------------------------------ arithmetic
    def _wrap(self, other):
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise ValueError(f"tensors on different devices: {self.device} and {other.device}")
            return other
        return Tensor(self.xp.asarray(other, dtype=self.data.dtype))

    def __add__(self, other):
        other = self._wrap(other)
        a, b = self.shape, other.shape
        return Tensor._from_op(self.data + other.data, (self, other),
                               lambda g: (_unbroadcast(g, a), _unbroadcast(g, b)), op="add")

    def __mul__(self, other):
        other = self._wrap(other)
        x, y = self.data, other.data
        return Tensor._from_op(x * y, (self, other),
                               lambda g: (_unbroadcast(g * y, x.shape), _unbroadcast(g * x, y.shape)), op="mul")

    def __truediv__(self, other):
        other = self._wrap(other)
        x, y = self.data, other.data
        # d(x/y)/dx = 1/y,  d(x/y)/dy = -x/y^2
        return Tensor._from_op(x / y, (self, other),
                               lambda g: (_unbroadcast(g / y, x.shape), _unbroadcast(-g * x / (y * y), y.shape)),
                               op="div")

    def __neg__(self):
        return Tensor._from_op(-self.data, (self,), lambda g: -g, op="neg")

    def __sub__(self, other):
        return self + (-self._wrap(other))

    def __radd__(self, other):
        return self._wrap(other) + self

    def __rsub__(self, other):
        return self._wrap(other) - self

    def __rmul__(self, other):
        return self._wrap(other) * self

    def __rtruediv__(self, other):
        return self._wrap(other) / self

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: the exponent must be a Python number")
        x = self.data
        # d(x^n)/dx = n x^(n-1)
        return Tensor._from_op(x ** exponent, (self,), lambda g: g * exponent * x ** (exponent - 1), op="pow")

    def __matmul__(self, other):
        other = self._wrap(other)
        a, b = self.data, other.data
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"matmul: expected two 2-D tensors, got shapes {a.shape} and {b.shape}")
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: inner dimensions differ, {a.shape} @ {b.shape}")
        # C = A B:  dA = dC B^T,  dB = A^T dC
        return Tensor._from_op(a @ b, (self, other), lambda g: (g @ b.T, a.T @ g), op="matmul")

    def exp(self):
        y = self.xp.exp(self.data)
        return Tensor._from_op(y, (self,), lambda g: g * y, op="exp")

    def log(self):
        x = self.data
        return Tensor._from_op(self.xp.log(x), (self,), lambda g: g / x, op="log")

    def sum(self, axis=None, keepdims=False):
        shape, xp = self.shape, self.xp

        def backward(g):
            if axis is not None and not keepdims:
                g = xp.expand_dims(g, axis)
            return xp.broadcast_to(g, shape).copy()

        return Tensor._from_op(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward, op="sum")

    def mean(self, axis=None, keepdims=False):
        total = self.sum(axis=axis, keepdims=keepdims)
        count = self.size // max(total.size, 1)
        return total * (1.0 / count)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        return Tensor._from_op(self.data.reshape(shape), (self,), lambda g: g.reshape(old), op="reshape")

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        axes = axes or tuple(reversed(range(self.ndim)))
        inverse = tuple(int(i) for i in np.argsort(axes))
        return Tensor._from_op(self.data.transpose(axes), (self,), lambda g: g.transpose(inverse), op="transpose")

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        shape, xp = self.shape, self.xp

        def backward(g):
            full = xp.zeros(shape, dtype=g.dtype)
            xp.add.at(full, index, g)  # add.at: repeated indices add up
            return full

        return Tensor._from_op(self.data[index], (self,), backward, op="getitem")

    def argmax(self, axis=None):
        return self.data.argmax(axis=axis)


class Parameter(Tensor):
    """A tensor that a Module owns and trains: requires_grad defaults to True."""

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        if not _device.is_array(data):
            data = np.asarray(data, dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


def tensor(data, requires_grad=False, dtype=None):
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)

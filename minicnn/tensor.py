"""Tensor: an array that remembers how it was computed.

A Tensor holds a NumPy array (CPU) or a CuPy array (GPU) in ``.data``. When an
op computes it from tensors that require a gradient, ``.grad_fn`` is the op's
node in the graph (see minicnn/autograd.py); tensors the user makes are leaves
(``grad_fn is None``). ``loss.backward()`` fills ``.grad`` of every leaf that
requires a gradient, adding to what is there, as in PyTorch.

``.grad`` is a plain array of the tensor's device (NumPy or CuPy), not a
Tensor: minicnn computes first derivatives only, and an array is what an
optimizer and a student's print() want.
"""

import weakref

import numpy as np

from . import autograd
from . import device as _device
from .autograd import RemovableHandle, no_grad, enable_grad, is_grad_enabled  # noqa: F401 (re-exported)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``Tensor(ndarray)`` keeps the array's dtype (float64 stays float64, which
    gradient checks need); Python numbers and lists become float32.
    """

    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__
    __hash__ = object.__hash__  # comparisons return arrays, so hashing is by identity

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
        self._version = 0            # bumped when .data is replaced or updated in place by minicnn
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.grad_fn = None          # the node of the op that made this tensor; None for a leaf
        self._hooks = {}             # a leaf's gradient hooks (a non-leaf's live on its grad_fn)
        self._accumulator = None     # a leaf's AccumulateGrad node, made when a graph first uses it

    # ----------------------------------------------------------------- data and its version
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, array):
        self._data = array
        self._version += 1

    def _mark_modified(self):
        """Say that .data was changed in place (the optimizers do), so that a backward through
        a graph that saved the old values raises instead of computing with the new ones."""
        self._version += 1

    # ----------------------------------------------------------------- graph
    @property
    def is_leaf(self):
        return self.grad_fn is None

    def _gradient_node(self):
        """The node a gradient for this tensor goes to: its grad_fn, or its leaf's AccumulateGrad."""
        if self.grad_fn is not None:
            return self.grad_fn
        if self._accumulator is None:
            self._accumulator = autograd.AccumulateGrad(self)
        return self._accumulator

    def backward(self, grad=None, retain_graph=False):
        """Compute the gradient of this tensor with respect to every leaf that requires one.

        Leaves get ``.grad`` (added to what is there); the graph's saved arrays are
        freed unless ``retain_graph=True``, after which a second backward() raises.
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
        autograd.backward(self._gradient_node(), grad, retain_graph=retain_graph)

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward (leaves always keep theirs)."""
        if self.grad_fn is None:
            return
        self.grad_fn._retained_output = weakref.ref(self)

    def register_hook(self, hook):
        """``hook(grad)`` runs when this tensor's gradient is computed; it may return a replacement.

        Returns a handle whose ``remove()`` takes the hook out."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: the tensor does not require grad, no gradient will reach it")
        hooks = self._hooks if self.grad_fn is None else self.grad_fn._hooks
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

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

    def size(self, dim=None):
        """The shape (PyTorch's ``size()``), or the length of one dimension."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        """The number of elements."""
        return int(self.data.size)

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

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
        node = f", grad_fn=<{self.grad_fn.name}>" if self.grad_fn is not None else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({self.numpy()!r}{dev}{node}{grad})"

    def numpy(self):
        """A NumPy copy of the data, from any device."""
        return _device.to_numpy(self.data).copy()

    def item(self):
        return self.numpy().item()

    def tolist(self):
        return self.numpy().tolist()

    # ----------------------------------------------------------------- DLPack (zero-copy exchange)
    def __dlpack__(self, **kwargs):
        """The array's DLPack capsule: torch.from_dlpack(t), numpy.from_dlpack(t) and
        cupy.from_dlpack(t) share this tensor's memory."""
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    # ------------------------------------------------------- devices, dtypes
    def to(self, target):
        """This tensor on a device ("cpu", "cuda") or as a dtype (np.float64, ...); gradients flow back."""
        if isinstance(target, str):
            return self if target == self.device else _ops.ToDevice.apply(self, target)
        dtype = np.dtype(target)
        return self if dtype == self.dtype else _ops.AsType.apply(self, dtype)

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def astype(self, dtype):
        return _ops.AsType.apply(self, np.dtype(dtype))

    # ------------------------------------------------------------ arithmetic
    def _wrap(self, other):
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise ValueError(f"tensors on different devices: {self.device} and {other.device}")
            return other
        return Tensor(self.xp.asarray(other, dtype=self.data.dtype))

    def __add__(self, other):
        return _ops.Add.apply(self, self._wrap(other))

    def __radd__(self, other):
        return _ops.Add.apply(self._wrap(other), self)

    def __sub__(self, other):
        return _ops.Sub.apply(self, self._wrap(other))

    def __rsub__(self, other):
        return _ops.Sub.apply(self._wrap(other), self)

    def __mul__(self, other):
        return _ops.Mul.apply(self, self._wrap(other))

    def __rmul__(self, other):
        return _ops.Mul.apply(self._wrap(other), self)

    def __truediv__(self, other):
        return _ops.Div.apply(self, self._wrap(other))

    def __rtruediv__(self, other):
        return _ops.Div.apply(self._wrap(other), self)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pow__(self, exponent):
        return _ops.Pow.apply(self, exponent)

    def __matmul__(self, other):
        return _ops.MatMul.apply(self, self._wrap(other))

    def exp(self):
        return _ops.Exp.apply(self)

    def log(self):
        return _ops.Log.apply(self)

    def sqrt(self):
        return _ops.Sqrt.apply(self)

    def abs(self):
        return _ops.Abs.apply(self)

    __abs__ = abs

    def clamp(self, min=None, max=None):  # noqa: A002 (PyTorch's argument names)
        """Limit every element to [min, max]; the gradient is 0 where an element was clipped."""
        return _ops.Clamp.apply(self, min, max)

    # ------------------------------------------------------------ comparisons (arrays, no gradient)
    def _other_data(self, other):
        return other.data if isinstance(other, Tensor) else other

    def __lt__(self, other):
        return self.data < self._other_data(other)

    def __le__(self, other):
        return self.data <= self._other_data(other)

    def __gt__(self, other):
        return self.data > self._other_data(other)

    def __ge__(self, other):
        return self.data >= self._other_data(other)

    def __eq__(self, other):
        return self.data == self._other_data(other)

    def __ne__(self, other):
        return self.data != self._other_data(other)

    # ------------------------------------------------------------ reductions
    # Each takes PyTorch's names (dim, keepdim) or NumPy's (axis, keepdims); one of each pair.
    def sum(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return _ops.Sum.apply(self, *_reduction_args("sum", dim, keepdim, axis, keepdims))

    def mean(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return _ops.Mean.apply(self, *_reduction_args("mean", dim, keepdim, axis, keepdims))

    def max(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        """The largest value (NumPy's convention: values only, also with ``dim``; argmax gives the indices)."""
        return _ops.Max.apply(self, *_reduction_args("max", dim, keepdim, axis, keepdims))

    def min(self, dim=None, keepdim=None, *, axis=None, keepdims=None):
        return _ops.Min.apply(self, *_reduction_args("min", dim, keepdim, axis, keepdims))

    def argmax(self, dim=None, *, axis=None):
        """Indices of the largest values, an integer array (no gradient)."""
        return self.data.argmax(axis=_checks.dim_or_axis("argmax", None, dim=dim, axis=axis))

    def argmin(self, dim=None, *, axis=None):
        return self.data.argmin(axis=_checks.dim_or_axis("argmin", None, dim=dim, axis=axis))

    # ------------------------------------------------------------ shapes and indexing
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.Reshape.apply(self, shape)

    view = reshape  # PyTorch's name; minicnn's reshape never needs a copy to be told apart

    def flatten(self, start_dim=0):
        """All dimensions from ``start_dim`` on as one (PyTorch's default flattens everything)."""
        return self.reshape(self.shape[:start_dim] + (-1,))

    def squeeze(self, dim=None, *, axis=None):
        axis = _checks.dim_or_axis("squeeze", None, dim=dim, axis=axis)
        if axis is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        axis = axis % self.ndim
        if self.shape[axis] != 1:
            raise ValueError(f"squeeze: axis {axis} has size {self.shape[axis]}, not 1")
        return self.reshape(self.shape[:axis] + self.shape[axis + 1:])

    def unsqueeze(self, dim=None, *, axis=None):
        axis = _checks.dim_or_axis("unsqueeze", None, dim=dim, axis=axis)
        if axis is None:
            raise TypeError("unsqueeze: needs the position of the new axis (dim)")
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.Transpose.apply(self, axes)

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, index):
        return _ops.GetItem.apply(self, index)


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


def _reduction_args(op, dim, keepdim, axis, keepdims):
    """(axis, keepdims) of a reduction called with PyTorch's names or NumPy's."""
    return (_checks.dim_or_axis(op, None, dim=dim, axis=axis),
            _checks.dim_or_axis(op, False, keepdim=keepdim, keepdims=keepdims))


# The Functions behind the methods above. Imported last because minicnn/ops/tensor_ops.py
# itself imports Tensor from this module; by now Tensor is defined.
from .ops import tensor_ops as _ops  # noqa: E402
from .ops import checks as _checks  # noqa: E402

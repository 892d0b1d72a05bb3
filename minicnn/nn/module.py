"""Module and Sequential: containers of parameters and sub-modules, as in PyTorch."""

from collections import OrderedDict

import numpy as np

from .. import device as _device
from ..tensor import Parameter, Tensor


class Module:
    """Base class of every layer and network.

    Assigning a Parameter or a Module as an attribute registers it, in the
    order of assignment; parameters(), state_dict() and friends walk them.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- walking the tree
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    # ---------------------------------------------------------------- modes and devices
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) every parameter of this module."""
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter (in place) to "cpu" or "cuda"; returns self."""
        _device.check_device_name(device)
        for p in self.parameters():
            p.data = _device.to_device(p.data, device)
            if p.grad is not None:
                p.grad = _device.to_device(p.grad, device)
        return self

    @property
    def device(self):
        params = self.parameters()
        return params[0].device if params else "cpu"

    # ---------------------------------------------------------------- state
    def state_dict(self):
        """An OrderedDict of name -> NumPy copy of each parameter (PyTorch's names and layouts)."""
        return OrderedDict((name, p.numpy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters, keeping each parameter's device and dtype.

        Raises a KeyError naming missing or unexpected entries (strict) and a
        ValueError naming any entry whose shape differs from the parameter's.
        """
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing entries {missing}, unexpected entries {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            if isinstance(value, Tensor):
                value = value.data
            value = np.asarray(_device.to_numpy(value) if _device.is_array(value) else value)
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: entry {name!r} has shape {value.shape}, "
                                 f"the model's parameter has shape {p.shape}")
            p.data = _device.to_device(value.astype(p.dtype, copy=True), p.device)
        return missing, unexpected

    # ---------------------------------------------------------------- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


class Sequential(Module):
    """Children called in order. Sequential(a, b) names them "0", "1";
    Sequential(OrderedDict(conv1=..., relu1=...)) keeps the given names."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            items = layers[0].items()
        else:
            items = ((str(i), layer) for i, layer in enumerate(layers))
        for name, layer in items:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: child {name!r} must be a Module, got {type(layer).__name__}")
            setattr(self, name, layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def append(self, layer):
        setattr(self, str(len(self._modules)), layer)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, str):
            return self._modules[index]
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

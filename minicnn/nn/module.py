"""Module and the containers (Sequential, ModuleList, ModuleDict), as in PyTorch."""

from collections import OrderedDict

import numpy as np

from .. import device as _device
from ..autograd import Function, RemovableHandle, is_grad_enabled, module_scope
from ..tensor import Parameter, Tensor
from . import input_errors

_running = []      # the modules whose __call__ is running, outermost first


class Module:
    """Base class of every layer and network.

    Assigning a Parameter or a Module as an attribute registers it, in the
    order of assignment; ``register_buffer`` registers state that is saved but
    not trained (such as BatchNorm's running mean). parameters(), state_dict()
    and friends walk them.

    ``module.trainable = False`` (Keras's switch) freezes it: see the property.

    Hooks, as in PyTorch (each register_* returns a handle with ``remove()``):
      forward_pre_hook(module, inputs)            may return replacement inputs
      forward_hook(module, inputs, output)        may return a replacement output
      full_backward_hook(module, grad_input, grad_output)
                                                  tuples of arrays (None where no gradient);
                                                  may return a replacement grad_input
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_trainable", True)

    # A layer that runs in inference mode while frozen, whatever train() says (BatchNorm sets it).
    inference_when_frozen = False

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name}")
        if name in self._buffers:
            self._buffers[name] = None if value is None else _as_buffer(value)
            object.__setattr__(self, name, self._buffers[name])
            return
        _refuse_plain_containers(self, name, value)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, value):
        """Keep ``value`` (an array or a Tensor, stored as a Tensor without gradient) as ``self.<name>``:
        saved in state_dict and moved by to(), but not a parameter."""
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        self._buffers[name] = None if value is None else _as_buffer(value)
        object.__setattr__(self, name, self._buffers[name])

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        probing = input_errors._probing             # a probe for the input size that fits: no hooks
        for hook in [] if probing else list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        call = None
        if self._backward_hooks and is_grad_enabled() and not probing:
            call = _BackwardHookCall(self, args)
            args = call.wrap_inputs(args)
        outermost = not _running
        _running.append(self)
        try:
            with module_scope(self):
                out = self.forward(*args, **kwargs)
        except (ValueError, TypeError) as error:
            # the layer that refused the input, and (once, at the outermost call) what would fit
            input_errors.note(error, self, args)
            if outermost and not probing:
                input_errors.explain(self, args, error)
            raise
        finally:
            _running.pop()
        if call is not None:
            out = call.wrap_output(out)
        for hook in [] if probing else list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    # ---------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook):
        """hook(module, inputs) runs before forward; it may return replacement inputs."""
        return _add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """hook(module, inputs, output) runs after forward; it may return a replacement output."""
        return _add_hook(self._forward_hooks, hook)

    def register_full_backward_hook(self, hook):
        """hook(module, grad_input, grad_output) runs when the gradients with respect to the
        module's inputs are known; it may return a replacement grad_input."""
        return _add_hook(self._backward_hooks, hook)

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

    def _named_members(self, table, prefix):
        """(dotted name, value) of one of the tables (_parameters, _buffers), this module's then its children's."""
        for name, value in getattr(self, table).items():
            if value is not None:
                yield (f"{prefix}.{name}" if prefix else name), value
        for name, child in self._modules.items():
            yield from child._named_members(table, f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix=""):
        return self._named_members("_parameters", prefix)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        return self._named_members("_buffers", prefix)

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    # ---------------------------------------------------------------- modes, devices, dtypes
    def train(self, mode=True):
        """Training mode (dropout drops, BatchNorm uses batch statistics) for this module and every
        module under it, or eval mode (False); a frozen BatchNorm stays in eval mode (see trainable)."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode) and not (m.inference_when_frozen and not m._trainable))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) every parameter of this module (PyTorch's way: the
        parameters only; ``trainable`` also keeps BatchNorm layers in inference mode)."""
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    @property
    def trainable(self):
        """Keras's switch. ``module.trainable = False`` freezes every parameter of the module
        (requires_grad False: no gradient, no update) and puts its BatchNorm layers in inference
        mode, where train() leaves them: they normalise with the running statistics they learned
        and keep them (Keras's rule since TensorFlow 2.0; docs/transfer.md says why).
        ``module.trainable = True`` makes every parameter trainable again and lets the BatchNorm
        layers follow train()/eval() again. Setting it sets it on every module below, as in
        Keras, so ``model.trainable = True`` then ``layer.trainable = False`` for the layers to
        keep frozen is Keras's fine-tuning recipe."""
        return self._trainable

    @trainable.setter
    def trainable(self, flag):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.trainable must be True or False, got {flag!r}")
        self.requires_grad_(bool(flag))
        for m in self.modules():
            object.__setattr__(m, "_trainable", bool(flag))
            if m.inference_when_frozen:          # to inference now, or back under this module's mode
                object.__setattr__(m, "training", self.training and bool(flag))

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, target):
        """Move every parameter and buffer (in place) to a device ("cpu", "cuda"), or cast the
        floating-point ones to a dtype (np.float64, ...); returns self."""
        if isinstance(target, str):
            _device.check_device_name(target)
            convert = lambda a: _device.to_device(a, target)                            # noqa: E731
        else:
            dtype = np.dtype(target)
            if dtype.kind != "f":
                raise TypeError(f"Module.to: parameters must stay floating point, got dtype {dtype}")
            convert = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a            # noqa: E731
        for t in self.parameters() + self.buffers():
            t.data = convert(t.data)
            if t.grad is not None:
                t.grad = convert(t.grad)
        return self

    def double(self):
        """Every floating-point parameter and buffer as float64 (for gradient checks)."""
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    @property
    def device(self):
        params = self.parameters()
        return params[0].device if params else "cpu"

    # ---------------------------------------------------------------- state
    def state_dict(self):
        """An OrderedDict of name -> NumPy copy of each parameter and buffer (PyTorch's names and layouts)."""
        state = OrderedDict((name, p.numpy()) for name, p in self.named_parameters())
        state.update((name, b.numpy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters and buffers, keeping each one's device and dtype.

        Raises a KeyError naming missing or unexpected entries (strict) and a
        ValueError naming any entry whose shape differs from the model's.
        """
        own = OrderedDict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing entries {missing}, unexpected entries {unexpected}")
        for name, t in own.items():
            if name not in state:
                continue
            value = state[name]
            if isinstance(value, Tensor):
                value = value.data
            value = np.asarray(_device.to_numpy(value) if _device.is_array(value) else value)
            if value.shape != t.shape:
                raise ValueError(f"load_state_dict: entry {name!r} has shape {value.shape}, "
                                 f"the model's parameter has shape {t.shape}")
            t.data = _device.to_device(value.astype(t.dtype, copy=True), t.device)
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


def _as_buffer(value):
    if isinstance(value, Tensor):
        return Tensor(value.data)
    if not _device.is_array(value):
        raise TypeError(f"a buffer must be an array or a Tensor, got {type(value).__name__}")
    return Tensor(value)


def _refuse_plain_containers(module, name, value):
    """Modules in a plain list or dict would be invisible to parameters() and state_dict(): refuse them."""
    if isinstance(value, (list, tuple)) and any(isinstance(v, Module) for v in value):
        raise TypeError(f"{type(module).__name__}.{name}: a plain {type(value).__name__} of Modules is not "
                        "registered (its parameters would neither train nor be saved); use mc.nn.ModuleList")
    if isinstance(value, dict) and not isinstance(value, Module) and any(isinstance(v, Module) for v in value.values()):
        raise TypeError(f"{type(module).__name__}.{name}: a plain dict of Modules is not registered "
                        "(its parameters would neither train nor be saved); use mc.nn.ModuleDict")


def _add_hook(hooks, hook):
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


# --------------------------------------------------------------------------- full backward hooks
class _BackwardHookCall:
    """One forward of a module with backward hooks. Its inputs and its output pass through
    identity nodes; the output's node notes grad_output, each input's node its grad_input
    entry, and when the last expected one arrives the hooks run."""

    def __init__(self, module, args):
        self.module = module
        self.grad_input = [None] * len(args)
        self.grad_output = None
        self.waiting = {i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad}
        self.expected = len(self.waiting)

    def wrap_inputs(self, args):
        return tuple(_InputGradient.apply(a, self, i) if i in self.waiting else a for i, a in enumerate(args))

    def wrap_output(self, out):
        if not isinstance(out, Tensor):
            raise TypeError(f"{type(self.module).__name__}: full backward hooks need forward to return one Tensor")
        return _OutputGradient.apply(out, self) if out.requires_grad else out

    def run_hooks(self):
        grad_input = tuple(self.grad_input)
        for hook in list(self.module._backward_hooks.values()):
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                grad_input = tuple(result)
        return grad_input


class _OutputGradient(Function):
    """Identity; its backward notes the module's grad_output."""

    @staticmethod
    def forward(ctx, x, call):
        ctx.call = call
        return x

    @staticmethod
    def backward(ctx, grad_output):
        ctx.call.grad_output = (grad_output,)
        if not ctx.call.waiting:             # no input needs a gradient: the hooks run now
            ctx.call.run_hooks()
        return grad_output, None


class _InputGradient(Function):
    """Identity; its backward delivers one entry of the module's grad_input."""

    @staticmethod
    def forward(ctx, x, call, index):
        ctx.call, ctx.index = call, index
        return x

    @staticmethod
    def backward(ctx, grad):
        call = ctx.call
        call.grad_input[ctx.index] = grad
        call.waiting.discard(ctx.index)
        if call.waiting:
            return grad, None, None
        replaced = call.run_hooks()
        if call.expected > 1 and any(r is not g for r, g in zip(replaced, call.grad_input)):
            raise RuntimeError(f"{type(call.module).__name__}: a full backward hook may replace grad_input "
                               "only for modules with one input that requires grad")
        return replaced[ctx.index], None, None


# --------------------------------------------------------------------------- containers
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


class ModuleList(Module):
    """A list of Modules whose parameters are registered (named "0", "1", ...); it has no forward."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: items must be Modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]


class ModuleDict(Module):
    """A dict of Modules whose parameters are registered under their keys; it has no forward."""

    def __init__(self, modules=None):
        super().__init__()
        for name, m in (modules or {}).items():
            self[name] = m

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: values must be Modules, got {type(module).__name__} for {name!r}")
        setattr(self, str(name), module)

    def __getitem__(self, name):
        return self._modules[name]

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

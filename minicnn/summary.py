"""mc.summary(model, input_shape): what each layer makes of one input, like Keras' model.summary()."""

import numpy as np

from . import nn
from .tensor import Tensor, no_grad


def _multiply_adds(layer, out_shape):
    """Multiply-adds of one input: each output of a conv sums C/groups * kH * kW products,
    each output of a dense layer sums in_features products. Other layers count 0."""
    outputs = int(np.prod(out_shape))
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return outputs * layer.in_channels // layer.groups * kh * kw
    if isinstance(layer, nn.Linear):
        return outputs * layer.in_features
    return 0


class Summary:
    """rows: (name, layer type, output shape without the batch, parameters, multiply-adds, output neurons)."""

    def __init__(self, rows, input_shape):
        self.rows = rows
        self.input_shape = tuple(input_shape)
        self.total_params = sum(r[3] for r in rows)
        self.total_mult_adds = sum(r[4] for r in rows)

    def __str__(self):
        header = ("layer", "type", "output shape", "params", "mult-adds", "neurons")
        body = [(name, kind, "x".join(map(str, shape)), f"{p:,}", f"{m:,}", f"{n:,}")
                for name, kind, shape, p, m, n in self.rows]
        widths = [max(len(str(r[i])) for r in [header] + body) for i in range(6)]
        line = lambda r: "  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w) for i, (v, w) in
                                   enumerate(zip(r, widths)))
        rule = "-" * len(line(header))
        return "\n".join([f"input: {'x'.join(map(str, self.input_shape))}", line(header), rule]
                         + [line(r) for r in body]
                         + [rule, f"total parameters: {self.total_params:,}",
                            f"total multiply-adds: {self.total_mult_adds:,}"])

    __repr__ = __str__


def summary(model, input_shape, dtype=np.float32):
    """Run one zero input of ``input_shape`` (C, H, W) or (N, C, H, W) through ``model`` and
    report each leaf layer's output shape, parameters, multiply-adds and output neurons.

    When the input cannot pass through the model, a ValueError names the layer that
    refused it, the shape it was given and the reason (the op's own message)."""
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"summary: input_shape must be (C, H, W) or (N, C, H, W) of positive ints, "
                         f"got {tuple(input_shape)!r}")
    rows = []
    running = []  # the layers entered and not yet left, outermost first: who failed, if one does

    def enter(layer_name):
        def pre_hook(layer, inputs):
            running.append((layer_name, layer, [getattr(a, "shape", None) for a in inputs]))
        return pre_hook

    def leave(layer_name, leaf):
        def hook(layer, inputs, out):
            running.pop()
            if leaf:
                out_shape = out.shape[1:]
                params = sum(p.numel() for p in layer._parameters.values() if p is not None)
                rows.append((layer_name, type(layer).__name__, out_shape, params,
                             _multiply_adds(layer, out_shape), int(np.prod(out_shape))))
        return hook

    # hooks on every layer: a leaf's forward hook records what it made, in the order the layers run
    handles = []
    for name, layer in model.named_modules():
        if name:
            handles.append(layer.register_forward_pre_hook(enter(name)))
            handles.append(layer.register_forward_hook(leave(name, leaf=not layer._modules)))
    was_training = model.training
    model.eval()
    try:
        x = Tensor(np.zeros(shape, dtype=dtype)).to(model.device)
        with no_grad():
            model(x)
    except (ValueError, TypeError) as e:
        if not running:
            raise
        name, layer, in_shapes = running[-1]
        given = ", ".join("x".join(map(str, s[1:])) for s in in_shapes if s is not None)
        raise ValueError(f"input {'x'.join(map(str, shape[1:]))} cannot pass through this model: layer "
                         f"{name} ({type(layer).__name__}) gets {given} and refuses it: {e}") from e
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Summary(rows, shape[1:])

"""What a model says when an input does not fit it: the layer that refused it and the input size
that fits (Module.__call__ calls ``explain`` once, at the outermost call).

    ValueError: linear: weight expects 9216 input features, input has 2304; in layer fc6 (Linear),
    given an input of 3x160x160; the input size that fits: 3x227x227 (square sides from 227 to 258 fit)

(one line: the command line prints errors as one line).

The op's own check raises the error (ops/checks.py, ops/conv.py ...); on its way out, each
module's __call__ notes the innermost layer and the shapes it was given (``note``), and the
outermost one adds them to the message. For a 4-D input it also probes the model with zero
images of other square sizes (in eval mode, without a graph, hooks or BatchNorm statistics
touched) to find the sides that pass: a dense layer that gets too few or too many features
says which way to go, a window larger than its input says "larger".
"""

import numpy as np

_probing = False       # True while probe() runs the model: no hooks, no explanations, nothing noted twice

MAX_SIDE = 1024        # probes stop here: a model taking larger inputs gets no suggestion


def note(error, module, args):
    """Remember on ``error`` the innermost module it came out of and the shapes that module was given."""
    if not hasattr(error, "minicnn_layer"):
        error.minicnn_layer = (module, [tuple(a.shape) for a in args if hasattr(a, "shape")])


def explain(root, args, error):
    """Add to ``error``'s message the layer of ``root`` that refused the input and, for images, the
    square input sides that fit. Changes the message in place (the traceback stays the op's)."""
    layer, shapes = getattr(error, "minicnn_layer", (None, []))
    if layer is None or layer is root or not error.args or not isinstance(error.args[0], str):
        return
    name = next((n for n, m in root.named_modules() if m is layer), "?")
    given = [s for s in (tuple(a.shape) for a in args if hasattr(a, "shape"))]
    text = f"; in layer {name} ({type(layer).__name__})"
    if given:
        text += f", given an input of {'x'.join(map(str, given[0][1:]))}"
    if given and len(given[0]) == 4 and _depends_on_size(error, layer, shapes):
        text += "; " + _fitting_text(root, given[0], args[0].dtype)
    error.args = (error.args[0] + text,) + error.args[1:]


def _depends_on_size(error, layer, shapes):
    """Whether another image size could make the error go: a window larger than its input, or a dense
    layer given the wrong number of features (not, say, the wrong number of channels)."""
    from ..ops.checks import InputTooSmallError
    from .layers import Linear
    if isinstance(error, InputTooSmallError):
        return True
    return isinstance(layer, Linear) and bool(shapes) and len(shapes[0]) == 2 and shapes[0][1] != layer.in_features


def _fitting_text(root, shape, dtype):
    channels, height, width = shape[1:]
    sides = fitting_sides(root, channels, max(height, width), dtype)
    if sides is None:
        return f"no square input of {channels} channels up to {MAX_SIDE}x{MAX_SIDE} fits this model near that size"
    low, high = sides
    text = f"the input size that fits: {channels}x{low}x{low}"
    return text + (f" (square sides from {low} to {high} fit)" if low != high else "")


def probe(model, channels, side, dtype):
    """Run one zero image (1, channels, side, side) through ``model``: "fits", "small" (make it larger),
    "large" (smaller), or "other" (it fails for a reason the size does not change)."""
    global _probing
    from ..ops.checks import InputTooSmallError
    from ..tensor import Tensor, no_grad
    from .layers import Linear

    modes = [(m, m.training) for m in model.modules()]
    _probing = True
    try:
        model.eval()                          # BatchNorm uses, and keeps, its running statistics
        with no_grad():
            model(Tensor(np.zeros((1, channels, side, side), dtype=dtype)).to(model.device))
        return "fits"
    except InputTooSmallError:
        return "small"
    except (ValueError, TypeError) as error:
        layer, shapes = getattr(error, "minicnn_layer", (None, []))
        if isinstance(layer, Linear) and shapes and len(shapes[0]) == 2:
            return "small" if shapes[0][1] < layer.in_features else "large"
        return "other"
    finally:
        _probing = False
        for module, training in modes:
            object.__setattr__(module, "training", training)


def fitting_sides(model, channels, start, dtype=np.float32):
    """(smallest, largest) square side near ``start`` whose images pass through ``model``, or None.

    The sides that fit are taken to be one interval (as with every network of convolutions,
    pooling and dense layers): below it a probe says "small", above it "large"."""
    seen = {}

    def at(side):
        if side not in seen:
            seen[side] = probe(model, channels, side, dtype) if 1 <= side <= MAX_SIDE else "other"
        return seen[side]

    smaller, larger = 0, None          # the largest side known too small, the smallest known too large
    side = start
    while at(side) in ("small", "large"):          # double (or halve) until the answer changes
        if at(side) == "small":
            smaller, nxt = side, side * 2
        else:
            larger, nxt = side, side // 2
        if (larger is not None and nxt >= larger) or nxt <= smaller:
            break                                   # crossed from small to large: the fit lies between
        side = nxt
    while at(side) != "fits":                       # bisect between the last small and the first large
        if at(side) == "other" or larger is None or larger - smaller <= 1:
            return None
        side = (smaller + larger) // 2
        if at(side) == "small":
            smaller = side
        elif at(side) == "large":
            larger = side
    low, high = smaller, side                       # the first side that fits lies in (low, high]
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid) == "small" else (low, mid)
    first = high
    if larger is None:                              # no side known too large yet: double until one is
        larger = side
        while larger <= MAX_SIDE and at(larger) == "fits":
            larger *= 2
    low, high = side, larger                        # the last side that fits lies in [low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid) == "fits" else (low, mid)
    return first, low

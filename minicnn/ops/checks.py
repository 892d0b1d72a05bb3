"""The argument checks the ops share: each raises a TypeError or ValueError that names
the op, the argument, what was expected and what was given, before any array is touched."""

import numpy as np

from ..shapes import four_pads
from ..tensor import Tensor


def as_tensor(op, name, value):
    if isinstance(value, Tensor):
        return value
    raise TypeError(f"{op}: {name} must be a minicnn Tensor, got {type(value).__name__}")


def check_float(op, name, t):
    if t.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating point tensor (float32 or float64), got dtype {t.dtype}")


def check_ndim(op, name, t, ndim, layout):
    if t.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {t.shape}")


def check_same(op, x, **others):
    """Other tensors must live on x's device and have x's dtype."""
    for name, t in others.items():
        if t is None:
            continue
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device} but input is on {x.device}; move both to one device")
        if t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but input has dtype {x.dtype}")


def pair(op, name, value, minimum):
    """An int or a pair of ints, each at least ``minimum``, as a (h, w) tuple."""
    pair_ = (value, value) if isinstance(value, (int, np.integer)) else value
    if (not isinstance(pair_, (tuple, list)) or len(pair_) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair_)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair_) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(pair_[0]), int(pair_[1])


PADDING_STRINGS = ("same", "valid")


def padding(op, value):
    """An int, an (h, w) pair, a (top, bottom, left, right) 4-tuple, or "same"/"valid".

    Returns the 4-tuple of ints (each >= 0), or the string, which the op resolves
    against the input's size (shapes.same_padding) once it knows it.
    """
    if isinstance(value, str):
        if value not in PADDING_STRINGS:
            raise ValueError(f"{op}: padding must be an int, a pair, a (top, bottom, left, right) tuple or one of "
                             f"{PADDING_STRINGS}, got {value!r}")
        return value
    if isinstance(value, (tuple, list)) and len(value) == 4:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{op}: padding (top, bottom, left, right) must hold ints, got {value!r}")
        if min(value) < 0:
            raise ValueError(f"{op}: padding must be >= 0, got {value!r}")
        return tuple(int(v) for v in value)
    try:
        ph, pw = pair(op, "padding", value, 0)
    except TypeError:
        raise TypeError(f"{op}: padding must be an int, a pair, a (top, bottom, left, right) tuple or one of "
                        f"{PADDING_STRINGS}, got {value!r}") from None
    return ph, ph, pw, pw


def number(op, name, value):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def positive_int(op, name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    return int(value)


class InputTooSmallError(ValueError):
    """A window (a kernel, a pooling window) larger than the padded input it slides over."""


def channels_last_hint(x, channels):
    """A sentence for a channel-count error when ``x`` looks channels-last: its last axis holds the
    ``channels`` the op expects (an (N, H, W, C) batch, as Keras and PIL lay images out)."""
    if x.ndim == 4 and x.shape[-1] == channels != x.shape[1]:
        return (f"; minicnn is channels-first (N, C, H, W), and this input's last axis has the {channels} "
                f"channels: a channels-last (N, H, W, C) batch? x.transpose(0, 3, 1, 2) turns it around")
    return ""


def check_window(op, x, kernel, padding, dilation=(1, 1)):
    """The kernel's window must fit inside the padded input; padding (top, bottom, left, right) or
    an (h, w) pair; with dilation d a kernel of size k spans d*(k-1) + 1 positions."""
    top, bottom, left, right = four_pads(padding)
    h, w = x.shape[2] + top + bottom, x.shape[3] + left + right
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if span[0] > h or span[1] > w:
        spans = f" with dilation {tuple(dilation)} spans {span}, which" if tuple(dilation) != (1, 1) else ""
        raise InputTooSmallError(f"{op}: kernel size {tuple(kernel)}{spans} is larger than the padded input "
                                 f"({h}, {w})")


def input_4d(op, x):
    x = as_tensor(op, "input", x)
    check_float(op, "input", x)
    check_ndim(op, "input", x, 4, "(N, C, H, W)")
    return x


def float_input(op, x):
    x = as_tensor(op, "input", x)
    check_float(op, "input", x)
    return x


def dim_or_axis(op, default, **names):
    """The one value given under PyTorch's name or NumPy's for the same argument (dim / axis,
    keepdim / keepdims); ``default`` when neither is given. Both given is a TypeError."""
    given = {name: value for name, value in names.items() if value is not None}
    if len(given) > 1:
        listed = " and ".join(f"{name}={value!r}" for name, value in given.items())
        raise TypeError(f"{op}: {listed} name the same argument (PyTorch's and NumPy's names); pass one of them")
    return next(iter(given.values()), default)


def check_axis(op, x, axis):
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a {x.ndim}-D input")
    return int(axis)

"""mc.gradcheck: compare an op's analytic backward with central differences."""

import numpy as np

from .device import to_numpy
from .tensor import Tensor


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, samples=None):
    """Check the gradients of ``fn(*inputs)`` with respect to every input that requires grad.

    The output is reduced to a scalar with fixed random weights r,
    L = sum(r * fn(inputs)); the analytic dL/dx from backward() must match
    (L(x + eps) - L(x - eps)) / (2 eps) at every entry, to atol + rtol * |numerical|.
    Inputs should be float64 CPU tensors. ``samples``: check only that many entries of
    each input, drawn at random (a whole network's parameters are too many for every
    entry). Returns True, or raises AssertionError naming the input, the index and both
    values of the worst entry.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} must be a Tensor, got {type(t).__name__}")
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {t.dtype}; central differences need float64")
    out = fn(*inputs)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(out.shape)

    def scalar():
        return float((fn(*inputs).numpy() * weights).sum())

    for t in inputs:
        t.grad = None
    out.backward(weights.astype(out.dtype))

    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = np.zeros(t.shape) if t.grad is None else to_numpy(t.grad).astype(np.float64)
        numerical = np.zeros(t.shape)
        checked = np.zeros(t.shape, dtype=bool)
        flat = t.data.reshape(-1)  # a view: perturbing it perturbs the input
        entries = range(flat.size) if samples is None or samples >= flat.size else \
            rng.choice(flat.size, size=samples, replace=False)
        for j in entries:
            checked.reshape(-1)[j] = True
            original = flat[j]
            flat[j] = original + eps
            plus = scalar()
            flat[j] = original - eps
            minus = scalar()
            flat[j] = original
            numerical.reshape(-1)[j] = (plus - minus) / (2 * eps)
        excess = np.where(checked, np.abs(analytic - numerical) - (atol + rtol * np.abs(numerical)), -np.inf)
        worst = np.unravel_index(np.argmax(excess), t.shape) if excess.size else None
        if worst is not None and excess[worst] > 0:
            raise AssertionError(f"gradcheck: input {i}, index {tuple(int(k) for k in worst)}: "
                                 f"analytic {analytic[worst]!r} vs numerical {numerical[worst]!r}")
    return True

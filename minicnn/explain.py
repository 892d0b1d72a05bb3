"""mc.explain("conv2d"): an op's formula, its derivative, and where each of its three definitions lives.

Every op exists three times: as plain loops (minicnn/naive.py, what tests compare
against), as readable NumPy (the ReferenceBackend in minicnn/backends/reference.py)
and as CUDA kernels (csrc/). explain prints the short form of the op's page in
docs/ops/, with the file and line of each definition, found in the code as it is
now (so the lines are never stale).

    python -m minicnn explain conv2d
"""

import inspect
import re
from pathlib import Path

from . import naive
from .backends.reference import ReferenceBackend
from .backends.sources import csrc_dir

PACKAGE = Path(__file__).resolve().parent

# name: (formula, derivative, naive functions, reference methods, kernels, page). The kernels are
# those the op launches, forward then backward, in the order they run; tests/test_explain.py
# traces each op (mc.trace) on every kernel backend and holds this list to what it launched.
OPS = {
    "conv2d": (
        "y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x[n, g*C/G + c, i*s + u*d - p, j*s + v*d - p]\n"
        "(cross-correlation per group g; as GEMMs: y_g = w_g @ im2col(x)_g)",
        "dw_g = dy_g @ cols_g^T;   dcols_g = w_g^T @ dy_g, dx = col2im(dcols);   db[o] = sum_{n,i,j} dy[n,o,i,j]",
        ["conv2d"], ["conv2d_forward", "conv2d_backward"],
        ["im2col", "side_by_side_to_nchw", "nchw_to_side_by_side", "col2im", "sum_rows", "sum_cols"], "conv2d.md"),
    "linear": (
        "y = x w^T + b,   x: (N, in), w: (out, in)",
        "dx = dy w;   dw = dy^T x;   db = sum_n dy[n]",
        ["linear"], ["linear_forward", "linear_backward"], ["bias_forward", "sum_cols"], "linear.md"),
    "max_pool2d": (
        "y[n,c,i,j] = max over the window (i*s - p .. i*s - p + k) of x[n,c]; ties: the first in row-major order",
        "dx = dy at each window's winner (argmax), 0 elsewhere; a pixel winning two windows gets both",
        ["max_pool2d"], ["max_pool2d_forward", "max_pool2d_backward"], ["max_pool_forward", "max_pool_backward"],
        "max_pool2d.md"),
    "avg_pool2d": (
        "y[n,c,i,j] = (1 / (kH kW)) sum over the window of x[n,c]   (zero padding counted)",
        "dx[pixel] = sum over the windows w holding it of dy[w] / (kH kW)",
        ["avg_pool2d"], ["avg_pool2d_forward", "avg_pool2d_backward"], ["avg_pool_forward", "avg_pool_backward"],
        "avg_pool2d.md"),
    "local_response_norm": (
        "b[c] = a[c] / s[c]^beta,   s[c] = k + alpha * sum_{c' within size//2 of c} a[c']^2   (paper: alpha not / size)",
        "da[i] = db[i] s[i]^-beta - 2 alpha beta a[i] sum_{j: i in window(j)} db[j] b[j] / s[j]",
        ["local_response_norm"], ["lrn_forward", "lrn_backward"], ["lrn_scale", "lrn_forward", "lrn_backward_terms", "lrn_backward"],
        "local_response_norm.md"),
    "relu": (
        "y = max(x, 0)   (leaky: y = x for x > 0, slope * x otherwise)",
        "dx = dy where x > 0, slope * dy elsewhere (0 for relu; the subgradient at 0 is the slope)",
        ["relu", "leaky_relu"], ["relu_forward", "relu_backward"], ["relu_forward", "relu_backward"], "relu.md"),
    "dropout": (
        "y = x / (1 - p) where keep(seed, i), 0 elsewhere;   keep = (fmix32-hash(seed, i) >> 8) >= p * 2^24",
        "dx = dy / (1 - p) where keep(seed, i), 0 elsewhere (the same mask, drawn again from the seed)",
        ["dropout"], ["dropout_forward", "dropout_backward"], ["dropout_forward", "dropout_backward"],
        "dropout.md"),
    "cross_entropy": (
        "loss = -(1/N) sum_n log softmax(z[n])[label[n]],   log softmax(z) = z - max z - log sum exp(z - max z)",
        "dz[n] = (softmax(z[n]) - onehot(label[n])) / N",
        ["cross_entropy", "softmax", "log_softmax"],
        ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"],
        ["softmax_partials", "softmax_cross_entropy_forward", "softmax_probs", "sum_rows", "mean_forward",
         "softmax_cross_entropy_backward"], "cross_entropy.md"),
    "sgd": (
        "g = grad + weight_decay * w;   v = momentum * v + g;   w -= lr * (v, or g + momentum * v with Nesterov)",
        "(an update, not an op: it has no derivative)",
        ["sgd_update"], ["sgd_update"], ["sgd_update"], "sgd_adam.md"),
    "adam": (
        "g = grad + wd * w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)",
        "(an update, not an op: it has no derivative)",
        ["adam_update"], ["adam_update"], ["adam_update"], "sgd_adam.md"),
    "adamw": (
        "w *= 1 - lr * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)",
        "(an update, not an op: it has no derivative)",
        ["adamw_update"], ["adamw_update"], ["adamw_update"], "sgd_adam.md"),
    "rmsprop": (
        "g = grad + wd * w;  s = alpha s + (1-alpha) g^2;  avg = sqrt(s [- gbar^2]) + eps;  w -= lr * g / avg "
        "(or through a momentum buffer)",
        "(an update, not an op: it has no derivative)",
        ["rmsprop_update"], ["rmsprop_update"], ["rmsprop_update"], "sgd_adam.md"),
}
ALIASES = {"leaky_relu": "relu", "lrn": "local_response_norm", "softmax_cross_entropy": "cross_entropy",
           "sgd_update": "sgd", "adam_update": "adam", "adamw_update": "adamw", "rmsprop_update": "rmsprop"}


def _relative(path):
    path = Path(path).resolve()
    for root in (PACKAGE.parent, PACKAGE):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return str(path)


def definition_line(path, name):
    """The line of ``def name(`` in a Python file, or of ``MC_KERNEL name(`` in a csrc/ header, or None."""
    pattern = rf"MC_KERNEL\s+{re.escape(name)}\s*\(" if str(path).endswith(".cuh") else \
        rf"\s*def\s+{re.escape(name)}\s*\("
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        if re.match(pattern, text):
            return number
    return None


def python_location(obj):
    """(file, line) of a function or method's ``def``."""
    obj = inspect.unwrap(obj)
    _, line = inspect.getsourcelines(obj)
    return _relative(inspect.getsourcefile(obj)), line


def kernel_location(name):
    """(file, line) of ``MC_KERNEL name(`` in csrc/."""
    for path in sorted(csrc_dir().glob("*.cuh")):
        line = definition_line(path, name)
        if line is not None:
            return _relative(path), line
    raise LookupError(f"no kernel named {name!r} in {csrc_dir()}")


def locations(op):
    """The naive, reference and kernel definitions of ``op`` as [(kind, name, file, line)]."""
    _, _, naive_names, reference_names, kernel_names, _ = OPS[op]
    found = [("naive", f"naive.{n}", *python_location(getattr(naive, n))) for n in naive_names]
    found += [("reference", f"ReferenceBackend.{n}", *python_location(getattr(ReferenceBackend, n)))
              for n in reference_names]
    found += [("kernel", k, *kernel_location(k)) for k in kernel_names]
    return found


def explain(op, file=None):
    """Print (and return) the short form of ``docs/ops/<op>.md``: formula, derivative, definitions."""
    key = ALIASES.get(op, op)
    if key not in OPS:
        raise ValueError(f"explain: no op named {op!r}; choose from {sorted(OPS)}")
    formula, derivative, *_, page = OPS[key]
    lines = [key, "=" * len(key), "forward:", "  " + formula.replace("\n", "\n  "), "backward:", "  " + derivative,
             "defined three times:"]
    lines += [f"  {kind:<9} {name:<40} {path}:{line}" for kind, name, path, line in locations(key)]
    lines.append(f"the whole page: docs/ops/{page}")
    text = "\n".join(lines)
    print(text, file=file)
    return text

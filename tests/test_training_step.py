"""One training step of the paper's AlexNet, the same on every backend.

Two comparisons, each against the NumPy reference on the CPU, each run on CI with the
`kernels` CPU backend (the csrc kernels compiled for the host) and, marked ``gpu``,
with both CUDA loaders:

- The whole step (forward, backward, SGD update) in float64. In float32 it cannot be
  compared: the paper's initialisation (biases 1, weights N(0, 0.01)) makes conv5's
  outputs nearly equal, a GEMM summing in another order (a relative change of ~5e-7)
  moves a few of pool5's 36,864 winners, and the gradient of every conv layer below
  then differs by up to a few percent of its largest entry (measured, kernels against
  reference on the CPU: conv1.weight by 5.7e-3, twelve of the 32 comparisons above 2e-4).
  In float64 the same step agrees to ~1e-12 of each tensor's largest entry.
- The forward pass in float32, layer by layer: each layer gets the reference's input
  and its output is held to a tolerance derived from the GEMM sizes. A dot product of
  K terms summed in any order (FMA or not) is within gamma_K * sum |w_i x_i| of the exact
  value, gamma_K = K u / (1 - K u), u = 2^-24 (Higham, "Accuracy and Stability of
  Numerical Algorithms", 3.1); two backends are within twice that of each other.
  Pooling, ReLU and dropout must agree bit for bit; LRN to a few ulps (pow).
"""

from contextlib import contextmanager

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import backends
from minicnn.device import to_numpy

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
LABELS = np.array([1, 10, 100, 999])
STEP_TOLERANCE = 1e-9           # of each tensor's largest entry; measured ~1e-12 (float64)
U32 = 2.0 ** -24                 # float32 unit roundoff


def gamma(k, u=U32):
    """Higham's gamma_k: the relative error bound of a k-term sum (or dot product) in any order."""
    return k * u / (1 - k * u)


def images(dtype):
    return np.random.default_rng(0).standard_normal((len(LABELS), 3, 227, 227)).astype(dtype)


# --------------------------------------------------------------------------- where a step runs
@contextmanager
def cpu_backend(name):
    """CPU ops through ``name`` ("reference" or "kernels") inside the block."""
    previous = backends.get_cpu_backend()
    mc.set_cpu_backend(name)
    try:
        yield
    finally:
        mc.set_cpu_backend(previous)


@pytest.fixture
def kernels_backend():
    """The csrc kernels compiled for the host, for CPU arrays."""
    pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")
    mc.set_cpu_backend("kernels")
    yield "cpu"
    mc.set_cpu_backend("reference")


@pytest.fixture(params=["rawkernel", "pybind11"])
def cuda_loader(request):
    """A CUDA loader; its tests are marked gpu (skipped, 'no CUDA device', without one)."""
    pytest.importorskip("cupy", reason="CuPy is not installed")
    if request.param == "pybind11":
        try:
            import minicnn._cuda  # noqa: F401
        except ImportError as e:
            pytest.skip(f"minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .): {e}")
    previous = mc.get_cuda_loader()
    mc.set_cuda_loader(request.param)
    yield "cuda"
    mc.set_cuda_loader(previous)


# --------------------------------------------------------------------------- the whole step, float64
def alexnet_step(device, dtype=np.float64):
    """One SGD step of the paper's AlexNet (the paper's settings, fixed dropout seeds) on ``device``
    with the backends as switched now. Returns the loss and, per parameter, its gradient,
    its momentum buffer (the update is -LR times it) and its value after the step, on the CPU."""
    mc.manual_seed(0)
    model = mc.models.alexnet(num_classes=1000).to(np.dtype(dtype)).to(device)
    model.train()
    optimizer = mc.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    mc.manual_seed(1)                   # the dropout seeds: the same masks on every backend
    loss = F.cross_entropy(model(mc.Tensor(images(dtype)).to(device)), LABELS)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    result = {}
    for position, (name, p) in enumerate(model.named_parameters()):
        velocity = optimizer.state[position]["velocity"]
        result[name] = {"gradient": to_numpy(p.grad), "momentum buffer": to_numpy(velocity),
                        "value after the step": to_numpy(p.data)}
    return float(loss.numpy()), result


@pytest.fixture(scope="module")
def reference_step():
    with cpu_backend("reference"):
        return alexnet_step("cpu")


def compare_steps(ours, ref):
    """Every gradient, momentum buffer and parameter, relative to its tensor's scale; all failures at once."""
    (loss, tensors), (loss_ref, tensors_ref) = ours, ref
    assert tensors.keys() == tensors_ref.keys()
    failures, worst = [], 0.0
    if abs(loss - loss_ref) > STEP_TOLERANCE * max(1.0, abs(loss_ref)):
        failures.append(f"loss {loss!r} against {loss_ref!r}")
    for name, parts in tensors_ref.items():
        step_size = LR * np.abs(parts["momentum buffer"]).max()       # how far this parameter moved
        for what, ref_value in parts.items():
            # a parameter after the step is compared on the scale of its update, not of itself
            # (biases at 1.0 move by ~1e-5), so the update must be right, not just the sum
            scale = step_size if what == "value after the step" else np.abs(ref_value).max()
            error = np.abs(tensors[name][what] - ref_value).max() / max(scale, 1e-300)
            worst = max(worst, error)
            if not error <= STEP_TOLERANCE:
                failures.append(f"{what} of {name}: {error:.3g} of its scale")
    assert not failures, f"{len(failures)} comparisons differ by more than {STEP_TOLERANCE:g}:\n  " + "\n  ".join(failures)
    return worst


def test_alexnet_training_step_kernels_equals_reference_float64(kernels_backend, reference_step):
    compare_steps(alexnet_step(kernels_backend), reference_step)


@pytest.mark.gpu
def test_alexnet_training_step_cuda_equals_cpu_float64(cuda_loader, reference_step):
    compare_steps(alexnet_step(cuda_loader), reference_step)


def test_step_comparison_can_fail(reference_step):
    """compare_steps sees a wrong update: a learning rate 1% off, in one parameter."""
    loss, tensors = reference_step
    wrong = {name: dict(parts) for name, parts in tensors.items()}
    parts = wrong["fc8.bias"]
    parts["value after the step"] = parts["value after the step"] - 0.01 * LR * parts["momentum buffer"]
    with pytest.raises(AssertionError, match="(?s)1 comparisons differ.*value after the step of fc8.bias"):
        compare_steps((loss, wrong), reference_step)


# --------------------------------------------------------------------------- the forward pass, float32, layer by layer
def reference_layers(model, x):
    """[(name, layer, input, output)] of every child of ``model``, and the loss, on the reference backend."""
    records = []
    with cpu_backend("reference"), mc.no_grad():
        mc.manual_seed(1)
        for name, layer in model.named_children():
            y = layer(x)
            records.append((name, layer, x.numpy(), y.numpy()))
            x = y
        loss = float(F.cross_entropy(x, LABELS).numpy())
    return records, loss


def tolerance(layer, x, y_ref):
    """How far two correct float32 backends may be apart on this layer's output, elementwise."""
    if isinstance(layer, (mc.nn.Conv2d, mc.nn.Linear)):
        # each side is within gamma_(K+1) (|W| |x| + |b|) of the exact W x + b (K products, one bias)
        w, b = np.abs(layer.weight.numpy()), np.abs(layer.bias.numpy())
        magnitude_inputs = [mc.Tensor(np.abs(a).astype(np.float64)) for a in (x, w, b)]
        with cpu_backend("reference"), mc.no_grad():
            if isinstance(layer, mc.nn.Conv2d):
                magnitude = F.conv2d(*magnitude_inputs, layer.stride, layer.padding, layer.groups).numpy()
            else:
                magnitude = F.linear(*magnitude_inputs).numpy()
        k = w[0].size                                   # C/groups * kh * kw, or in_features
        return 2 * gamma(k + 1) * magnitude
    if isinstance(layer, mc.nn.LocalResponseNorm):
        # a five-term sum of squares, pow (CUDA's powf is within 4 ulps), a product: 32 units is ample
        return 32 * U32 * np.abs(y_ref)
    return 0.0                                          # pooling, ReLU, dropout, flatten: exact


def check_forward_float32(device):
    """Each layer of AlexNet on ``device`` (backends as switched now) from the reference's input."""
    mc.manual_seed(0)
    model = mc.models.alexnet(num_classes=1000)
    model.train()
    records, loss_ref = reference_layers(model, mc.Tensor(images(np.float32)))
    model.to(device)
    failures, report = [], []
    with mc.no_grad():
        mc.manual_seed(1)                # the dropout layers draw the same seeds, in the same order
        for name, layer, x, y_ref in records:
            y = to_numpy(layer(mc.Tensor(x).to(device)).data)
            difference = np.abs(y.astype(np.float64) - y_ref)
            allowed = np.asarray(tolerance(layer, x, y_ref), dtype=np.float64)
            share = (difference / np.maximum(allowed, 1e-300)).max() if np.any(allowed) else 0.0
            report.append(f"{name}: largest difference {difference.max():.3g}, {share:.3g} of the bound")
            if not np.all(difference <= allowed):
                failures.append(f"{name}: {int((difference > allowed).sum())} entries beyond the bound")
        # the loss of the reference logits: K = 1000 exponentials summed, a log, a difference
        logits = records[-1][3]
        loss = float(F.cross_entropy(mc.Tensor(logits).to(device), LABELS).numpy())
    loss_bound = 2 * (gamma(logits.shape[1]) + 16 * U32) * (1 + 2 * np.abs(logits).max())
    if not abs(loss - loss_ref) <= loss_bound:
        failures.append(f"loss {loss!r} against {loss_ref!r} (bound {loss_bound:.3g})")
    assert not failures, "\n".join(failures + ["", "per layer:"] + report)
    return report


def test_alexnet_forward_float32_kernels_within_gemm_bounds(kernels_backend):
    check_forward_float32(kernels_backend)


@pytest.mark.gpu
def test_alexnet_forward_float32_cuda_within_gemm_bounds(cuda_loader):
    check_forward_float32(cuda_loader)

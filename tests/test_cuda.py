"""One whole AlexNet training step on the GPU, through both loaders (RawKernel and pybind11),
against the CPU.

Every test here is marked ``gpu``: collected everywhere, skipped with the reason
"no CUDA device" where CuPy sees no GPU (tests/conftest.py). The pybind11 loader
is skipped, with its reason, where minicnn._cuda was not built
(scripts/gpu_check.sh builds it with MINICNN_BUILD_CUDA=1, so there it must run).
The op-by-op GPU cases run through the ``backend`` fixture of the op-family modules
(tests/fixtures.py: "cuda-rawkernel", "cuda-pybind11").
"""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F

pytestmark = pytest.mark.gpu

LOADERS = ["rawkernel", "pybind11"]


@pytest.fixture(params=LOADERS)
def loader(request):
    pytest.importorskip("cupy", reason="CuPy is not installed")
    if request.param == "pybind11":
        try:
            import minicnn._cuda  # noqa: F401
        except ImportError as e:
            pytest.skip(f"minicnn._cuda is not built (MINICNN_BUILD_CUDA=1 pip install -e .): {e}")
    previous = mc.get_cuda_loader()
    mc.set_cuda_loader(request.param)
    yield request.param
    mc.set_cuda_loader(previous)


def cpu(a):
    return None if a is None else (a.get() if hasattr(a, "get") else np.asarray(a))


def test_alexnet_training_step_cuda_equals_cpu(loader):
    """One SGD step of the paper's AlexNet (same weights, same dropout seeds) on both devices."""
    def step(device):
        mc.manual_seed(0)
        model = mc.models.alexnet(num_classes=1000)
        before = model.state_dict()
        model.train()
        model.to(device)
        rng = np.random.default_rng(0)
        images = mc.Tensor(rng.standard_normal((4, 3, 227, 227)).astype(np.float32)).to(device)
        labels = np.array([1, 10, 100, 999])
        optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        mc.manual_seed(1)                   # the dropout seeds: the same masks on both devices
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        grads = {name: cpu(p.grad) for name, p in model.named_parameters()}
        optimizer.step()
        after = model.state_dict()
        return float(loss.numpy()), grads, {name: after[name] - before[name] for name in after}

    loss_gpu, grads_gpu, update_gpu = step("cuda")
    loss_cpu, grads_cpu, update_cpu = step("cpu")
    assert abs(loss_gpu - loss_cpu) <= 1e-4 * max(1.0, abs(loss_cpu))
    for name in grads_cpu:
        # float32 sums in another order: compare on the scale of each tensor's largest entry
        for what, ours, ref in (("gradient", grads_gpu, grads_cpu), ("SGD update", update_gpu, update_cpu)):
            scale = np.abs(ref[name]).max() + 1e-20
            np.testing.assert_allclose(ours[name] / scale, ref[name] / scale, rtol=0, atol=2e-4,
                                       err_msg=f"{what} of {name}")

"""A training step queues its work on the GPU and never waits for it: no device-to-host copy.

Every copy from the GPU to the host (``.get()``, ``cupy.asnumpy``, ``.item()``, ``int()``,
``float()`` or ``bool()`` of a device array, printing one) makes the host wait until the
GPU has finished everything queued before it. One such copy per batch (a label check, a
loss read for a progress bar) idles the GPU for every batch's launch latency. So:

- one step of ``alexnet_small`` (forward, cross-entropy, backward, SGD) makes none;
- ``mc.fit`` reads the loss and error counts once per ``training.READ_EVERY`` batches.

No GPU is needed: ``fake_gpu`` makes "cuda" arrays NumPy arrays of a subclass that counts
every one of those transfers, the CUDA backend's loader runs the host build of the
kernels (minicnn._host) as CuPy's RawModule would launch them, and the device layer
(minicnn/device.py) believes a GPU is there. On a GPU, the same code runs on CuPy.
"""

import traceback
import types

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import device as _device

_host = pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")


# --------------------------------------------------------------------------- a GPU made of NumPy
class DeviceArray(np.ndarray):
    """A NumPy array standing in for a CuPy array: every way CuPy copies it to the host is
    recorded (with where it happened) in ``DeviceArray.transfers``."""

    transfers = []

    @classmethod
    def record(cls, how):
        # the minicnn lines that led here, innermost first
        frames = [f for f in traceback.extract_stack()[:-2] if "minicnn" in f.filename and "tests" not in f.filename]
        where = " < ".join(f"{f.filename.split('minicnn')[-1]}:{f.lineno} {f.line}" for f in reversed(frames))
        cls.transfers.append(f"{how} at {where or '?'}")

    def __array_wrap__(self, result, context=None, return_scalar=False):
        # CuPy gives 0-d device arrays where NumPy would give scalars: so does this
        return np.asarray(result).view(DeviceArray)

    def __getitem__(self, key):
        # an element is a 0-d device array, as in CuPy, not a host scalar
        return on_device(super().__getitem__(key))

    def get(self, stream=None):
        DeviceArray.record(".get()")
        return self.view(np.ndarray).copy()

    def item(self, *args):
        DeviceArray.record(".item()")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        DeviceArray.record(".tolist()")
        return self.view(np.ndarray).tolist()

    def __int__(self):
        DeviceArray.record("int()")
        return int(self.view(np.ndarray))

    def __float__(self):
        DeviceArray.record("float()")
        return float(self.view(np.ndarray))

    def __bool__(self):
        DeviceArray.record("bool()")
        return bool(self.view(np.ndarray))

    def __index__(self):
        DeviceArray.record("an index")
        return self.view(np.ndarray).__index__()

    def __repr__(self):
        DeviceArray.record("repr()")
        return "device " + repr(self.view(np.ndarray))

    def __str__(self):
        DeviceArray.record("str()")
        return str(self.view(np.ndarray))

    def __format__(self, spec):
        DeviceArray.record("format()")
        return format(self.view(np.ndarray), spec)


def on_device(value):
    """What a CuPy function returns where the NumPy one returns an ndarray or a scalar."""
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, np.generic):
        return np.asarray(value).view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(on_device(v) for v in value)
    return value


def fake_cupy():
    """NumPy's namespace with every result moved to the 'device', plus the bits of CuPy minicnn uses."""
    fake = types.ModuleType("fake_cupy")
    for name in dir(np):
        if name.startswith("__"):
            continue
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            value = (lambda f: lambda *args, **kwargs: on_device(f(*args, **kwargs)))(value)
        setattr(fake, name, value)
    fake.ndarray = DeviceArray

    def asnumpy(a, stream=None):
        if isinstance(a, DeviceArray):
            DeviceArray.record("cupy.asnumpy()")
            return a.view(np.ndarray).copy()
        return np.asarray(a)

    def asarray(a, dtype=None):     # host to device: a copy, unless it is there already
        if isinstance(a, DeviceArray):
            return a if dtype is None else a.astype(dtype, copy=False)
        return np.array(a, dtype=dtype).view(DeviceArray)

    fake.asnumpy, fake.asarray = asnumpy, asarray
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    fake.cuda = types.SimpleNamespace(driver=types.SimpleNamespace(CUDADriverError=RuntimeError),
                                      get_current_stream=lambda: stream,
                                      runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    return fake


class HostRawModule:
    """cupy.RawModule's stand-in: get_function("im2col<float>") launches the host build of that
    kernel, after checking each argument is typed as the kernel declares it (CuPy passes none)."""

    def get_function(self, expression):
        name, ctype = expression[:-1].split("<")
        t = {"float": np.float32, "double": np.float64}[ctype]
        function = getattr(_host, f"{name}_{np.dtype(t).name}")

        def launch(grid, block, args):
            assert isinstance(args[0], np.int64), f"{expression}: count must be an int64 (mc_index)"
            for a in args[1:]:
                assert isinstance(a, (DeviceArray, np.int64, np.uint32, t)), f"{expression}: badly typed {a!r}"
            function(*args)
        return launch


@pytest.fixture
def fake_gpu(monkeypatch):
    """"cuda" is NumPy (DeviceArray) with the host kernels behind the RawKernel loader."""
    from minicnn.backends import cuda, kernels
    fake = fake_cupy()
    loader = object.__new__(cuda.RawKernelLoader)
    loader.cp = loader.xp = fake
    loader.module, loader.functions = HostRawModule(), {}
    monkeypatch.setattr(_device, "_cupy", lambda: fake)
    monkeypatch.setattr(_device, "cuda_available", lambda: True)
    monkeypatch.setattr(_device, "_on_cpu", lambda a: isinstance(a, (np.ndarray, np.generic))
                        and not isinstance(a, DeviceArray))
    monkeypatch.setattr(cuda, "_backends", {"rawkernel": kernels.KernelBackend(loader, "cuda")})
    monkeypatch.setattr(mc.backends, "_cuda_loader", "rawkernel")
    DeviceArray.transfers = []
    yield DeviceArray
    DeviceArray.transfers = []


def test_the_fake_gpu_counts_what_it_should(fake_gpu):
    x = mc.Tensor(np.arange(6, dtype=np.float32)).to("cuda")
    assert x.device == "cuda" and isinstance(x.data, DeviceArray) and fake_gpu.transfers == []
    y = (x * 2).sum()
    assert isinstance(y.data, DeviceArray) and y.device == "cuda" and fake_gpu.transfers == []
    assert y.item() == 30.0 and int(x.data[1]) == 1 and x.numpy()[2] == 2.0
    assert [t.split(" at ")[0] for t in fake_gpu.transfers] == [".get()", "int()", ".get()"]


# --------------------------------------------------------------------------- one step, and fit
def small_model_and_batch(batch=8):
    mc.manual_seed(0)
    model = mc.models.alexnet_small(num_classes=10).to("cuda")
    model.train()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    return model, images, labels


def test_one_alexnet_small_training_step_copies_nothing_to_the_host(fake_gpu):
    model, images, labels = small_model_and_batch()
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = mc.Tensor(images).to("cuda")                 # host to device: fine
    assert fake_gpu.transfers == []
    loss = F.cross_entropy(model(x), labels)         # labels checked on the host, then copied
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert fake_gpu.transfers == [], "a training step waited for the GPU:\n  " + "\n  ".join(fake_gpu.transfers)
    assert isinstance(model.conv1.weight.data, DeviceArray) and model.conv1.weight.grad is not None
    # and the step did happen, on the "GPU": the loss can be read (one transfer) and is finite
    assert np.isfinite(loss.item()) and len(fake_gpu.transfers) == 1


def test_adam_step_copies_nothing_to_the_host(fake_gpu):
    model, images, labels = small_model_and_batch()
    optimizer = mc.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        loss = F.cross_entropy(model(mc.Tensor(images).to("cuda")), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fake_gpu.transfers == [], "\n".join(fake_gpu.transfers)


def test_bad_labels_are_caught_on_the_host_before_the_copy(fake_gpu):
    model, images, labels = small_model_and_batch()
    logits = model(mc.Tensor(images).to("cuda"))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got values from 0 to 10"):
        F.cross_entropy(logits, np.where(labels == labels.max(), 10, labels))
    assert fake_gpu.transfers == []


def test_fit_reads_the_device_once_per_read_every_batches(fake_gpu, monkeypatch):
    from minicnn import training
    monkeypatch.setattr(training, "READ_EVERY", 3)
    model, images, labels = small_model_and_batch(batch=4)
    batches = 2 * training.READ_EVERY + 1
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = mc.fit(model, [(images, labels)] * batches, epochs=1, optimizer=optimizer, verbose=False)
    # after batches 3, 6 and 7 (the last): the loss sum and the two error counts, three numbers each time;
    # and once at the end of the epoch the counts of predicted and labelled classes (the collapse check)
    assert len(fake_gpu.transfers) == 3 * 3 + 1, "\n".join(fake_gpu.transfers)
    assert all("training.py" in t for t in fake_gpu.transfers[:-1]) and "run_checks.py" in fake_gpu.transfers[-1]
    assert np.isfinite(history.train_loss[0]) and 0 <= history.train_top1[0] <= 1


def test_a_resnet18_step_with_the_loss_options_copies_nothing_to_the_host(fake_gpu):
    """BatchNorm in training (statistics, running averages), the shortcut adds, and cross_entropy
    with class weights and label smoothing (log_softmax + nll_loss) queue everything on the GPU."""
    mc.manual_seed(0)
    model = mc.models.resnet18(num_classes=3).to("cuda").train()
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)
    x = mc.Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)).to("cuda")
    logits = model(x)
    loss = F.cross_entropy(logits, np.array([0, 2]), weight=np.array([1.0, 2.0, 0.5]), label_smoothing=0.1)
    loss = loss + F.mse_loss(logits, np.zeros((2, 3), np.float32))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert fake_gpu.transfers == [], "a training step waited for the GPU:\n  " + "\n  ".join(fake_gpu.transfers)
    assert isinstance(model.layer1[0].bn1.running_mean.data, DeviceArray)


def test_a_trace_waits_for_the_gpu_around_each_op_and_launch_and_nowhere_else(fake_gpu):
    """mc.trace times launches by waiting for the GPU before and after each one (and each op);
    an untraced step, before or after a trace, never waits. Reading shapes copies nothing."""
    from minicnn.backends import cuda
    waits = []
    cuda._backends["rawkernel"].loader.xp.cuda.get_current_stream().synchronize = lambda: waits.append(1)
    model, images, labels = small_model_and_batch(batch=2)
    optimizer = mc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = mc.Tensor(images).to("cuda")

    def step():
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    assert waits == []
    with mc.trace() as t:
        step()
    assert {r["runner"] for r in t.launches} == {"rawkernel"} and "im2col" in {r["kernel"] for r in t.launches}
    assert len(waits) == 2 * (len(t.launches) + len(t.ops)) + 2      # around each, and the block's ends
    assert fake_gpu.transfers == [], "\n".join(fake_gpu.transfers)
    waits.clear()
    step()
    assert waits == []

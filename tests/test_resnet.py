"""ResNet-18 and VGG16-BN in torchvision's layout: names, torchvision-format weights, logits and a
training step against PyTorch; ResNet-18 as a transfer-learning base.

torchvision itself does not import beside this machine's torch (2.13.0): the PyTorch reference
models are written out here with plain torch.nn modules, in torchvision's module tree and
names (TorchResNet18 is torchvision.models.resnet18's tree; torch_vgg16_bn_features its
vgg16_bn().features). test_torchvision_resnet18_itself runs against torchvision where it
imports, and skips, saying why, where it does not. Every torch test skips without torch.
"""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import transfer, weights
from minicnn.models.vgg import VGG16_CONFIG


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: the PyTorch comparison is skipped "
                                               "(pip install torch to run it)")


def torch_resnet18(num_classes=1000):
    """torchvision.models.resnet18's module tree and forward, written out with torch.nn."""
    torch = _torch()
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
            self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
            self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
            self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def randomise_batch_norms(torch_model, seed):
    """Running statistics, weights and biases away from their 0/1 starts, so that loading them matters."""
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, low, high in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2), (m.running_mean, -0.2, 0.2),
                                     (m.running_var, 0.5, 1.5)):
                    t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * (high - low) + low)
                m.num_batches_tracked.fill_(7)


def assert_gradients_close(actual, expected, err_msg=""):
    """Float64 gradients of a deep network: sums over many terms that cancel (BatchNorm's backward
    subtracts the mean gradient), so they agree relative to the array's largest entry."""
    np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max(), err_msg=err_msg)


def _pair(tmp_path, seed=0, num_classes=10):
    """A torch ResNet-18 with random weights, saved as a .pth, and ours loaded from that file (float64)."""
    torch = _torch()
    torch.manual_seed(seed)
    theirs = torch_resnet18(num_classes).double()
    randomise_batch_norms(theirs, seed)
    path = tmp_path / "resnet18.pth"
    torch.save(theirs.state_dict(), path)
    ours = mc.models.resnet18(num_classes=num_classes).double()      # float64 first: loading keeps our dtype
    result = weights.load(ours, path)
    assert result.missing == [] and result.unexpected == [] and result.mismatched == []
    return theirs, ours, path


# --------------------------------------------------------------------------- no torch needed
def test_resnet18_layout():
    model = mc.models.resnet18()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    assert list(model._modules) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                    "avgpool", "flatten", "fc"]
    names = list(model.state_dict())
    for expected in ("layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                     "layer4.1.bn2.num_batches_tracked", "fc.bias"):
        assert expected in names
    assert "layer1.0.downsample.0.weight" not in names          # same size and channels: identity shortcut
    assert len(names) == 122
    base = mc.models.resnet18(include_top=False)
    assert base(mc.Tensor(np.zeros((2, 3, 64, 64), np.float32))).shape == (2, 512, 2, 2)
    summary = mc.summary(model, (3, 224, 224))
    assert summary.total_params == 11_689_512
    with pytest.raises(ValueError, match="resnet18: num_classes must be a positive int"):
        mc.models.resnet18(num_classes=0)


def test_vgg16_bn_layout_and_names():
    model = mc.models.vgg16_bn(include_top=False)
    names = list(model._modules)
    assert names[:4] == ["conv1_1", "bn1_1", "relu1_1", "conv1_2"] and names[-1] == "pool5"
    assert sum(p.numel() for p in model.parameters()) == 14_723_136      # torchvision's vgg16_bn().features
    tv = weights.TORCHVISION_NAMES["vgg16_bn"]
    assert tv["features.0"] == "conv1_1" and tv["features.1"] == "bn1_1" and tv["features.41"] == "bn5_3"
    ours = {name.rpartition(".")[0] for name, _ in model.named_parameters()}
    assert set(tv.values()) == ours | {"fc6", "fc7", "fc8"}


def test_old_files_without_num_batches_tracked_load():
    ours = mc.models.resnet18(num_classes=3)
    state = {k: v for k, v in mc.models.resnet18(num_classes=3).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    result = weights.load(ours, state)
    assert result.missing == [] and "bn1.running_var" in result.loaded


def test_kernels_backend_runs_resnet18_as_the_reference():
    pytest.importorskip("minicnn._host", reason="minicnn._host is not built (pip install -e .)")
    mc.manual_seed(0)
    model = mc.models.resnet18(num_classes=4).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    results = {}
    for backend in ("reference", "kernels"):
        mc.set_cpu_backend(backend)
        try:
            model.zero_grad()
            loss = F.cross_entropy(model(mc.Tensor(x)), np.array([1, 3]))
            loss.backward()
            results[backend] = [loss.numpy()] + [p.grad.copy() for p in model.parameters()]
        finally:
            mc.set_cpu_backend("reference")
    for a, b in zip(results["kernels"], results["reference"]):
        assert_gradients_close(a, b)


def test_resnet18_step_on_the_gpu_matches_the_cpu(gpu_backend):
    """The whole training step (BatchNorm in training mode, the shortcut adds, max pooling with padding)
    on each CUDA loader against the NumPy reference, in float64."""
    mc.manual_seed(1)
    model = mc.models.resnet18(num_classes=4).double()
    x, labels = np.random.default_rng(1).standard_normal((2, 3, 32, 32)), np.array([1, 3])
    start, results = model.state_dict(), []
    for device in ("cpu", gpu_backend.device):
        model.load_state_dict(start)            # the same running statistics before each step
        model.to(device)
        model.zero_grad()
        loss = F.cross_entropy(model(mc.Tensor(x).to(device)), labels)
        loss.backward()
        results.append([loss.numpy()] + [gpu_backend.numpy(p.grad) for p in model.parameters()]
                       + [gpu_backend.numpy(b.data) for b in model.buffers()])
    for ours, ref in zip(*results[::-1]):
        assert_gradients_close(ours, ref)


# --------------------------------------------------------------------------- PyTorch
def test_resnet18_torch_weights_give_torch_logits_in_eval_and_train_mode(tmp_path):
    torch = _torch()
    theirs, ours, _ = _pair(tmp_path)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64))
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(mc.Tensor(x)).numpy(), expected, rtol=1e-9, atol=1e-10)
    # training mode: batch statistics, and the running ones move the same way
    theirs.train()
    ours.train()
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(mc.Tensor(x)).numpy(), expected, rtol=1e-9, atol=1e-10)
    our_state = ours.state_dict()
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(our_state[name], value.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_resnet18_training_step_gradients_equal_pytorch(tmp_path):
    torch = _torch()
    theirs, ours, _ = _pair(tmp_path, seed=2, num_classes=5)
    x, labels = np.random.default_rng(3).standard_normal((2, 3, 40, 40)), np.array([0, 4])
    theirs.train()
    ours.train()
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    our_opt = mc.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(2):
        their_loss = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(labels))
        our_loss = F.cross_entropy(ours(mc.Tensor(x)), labels)
        their_opt.zero_grad()
        our_opt.zero_grad()
        their_loss.backward()
        our_loss.backward()
        np.testing.assert_allclose(our_loss.numpy(), their_loss.detach().numpy(), rtol=1e-10)
        their_params = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            assert_gradients_close(p.grad, their_params[name].grad.numpy(), err_msg=f"step {step}: {name}")
        their_opt.step()
        our_opt.step()
    our_state = ours.state_dict()
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(our_state[name], value.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)


def torch_vgg16_bn_features():
    """torchvision.models.vgg16_bn().features, written out with torch.nn."""
    torch = _torch()
    nn = torch.nn
    layers, in_channels = [], 3
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers)


def test_vgg16_bn_torchvision_names_give_torch_features():
    torch = _torch()
    torch.manual_seed(4)
    features = torch_vgg16_bn_features().double()
    randomise_batch_norms(features, 4)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    ours = mc.models.vgg16_bn(include_top=False).double()
    result = weights.load(ours, state)
    assert result.missing == [] and result.unexpected == [] and "bn5_3.running_mean" in result.loaded
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32))
    for mode in ("eval", "train"):
        getattr(features, mode)()
        getattr(ours, mode)()
        with torch.no_grad():
            expected = features(torch.tensor(x)).numpy()
        np.testing.assert_allclose(ours(mc.Tensor(x)).numpy(), expected, rtol=1e-9, atol=1e-10, err_msg=mode)


def test_torchvision_resnet18_itself(tmp_path):
    torch = _torch()
    try:
        import torchvision
    except Exception as e:      # not installed, or built for another torch (ImportError, RuntimeError, ...)
        pytest.skip(f"torchvision does not import here ({type(e).__name__}: {e}); the same comparison runs "
                    f"against the torch.nn copy of its module tree (torch_resnet18)")
    torch.manual_seed(6)
    theirs = torchvision.models.resnet18(num_classes=7).double().eval()
    randomise_batch_norms(theirs, 6)
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    ours = mc.models.resnet18(num_classes=7).double()
    weights.load(ours, tmp_path / "tv.pth")
    ours.eval()
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64))
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(mc.Tensor(x)).numpy(), expected, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------- transfer learning
def test_resnet18_transfer_base_keeps_frozen_batch_norm_in_eval(tmp_path):
    _torch()
    _, _, path = _pair(tmp_path, num_classes=1000)
    model = transfer.transfer_model("resnet18", num_classes=3, weights=path)
    assert isinstance(model, transfer.TransferModel)
    trainable, frozen = transfer.count_parameters(model)
    assert trainable == 512 * 3 + 3 and frozen == 11_689_512 - 512 * 1000 - 1000
    before = {k: v.copy() for k, v in model.base.state_dict().items()}
    model.train()                                     # as mc.fit does each epoch
    assert not model.base.bn1.training and model.head.training
    x = np.random.default_rng(8).standard_normal((4, 3, 32, 32)).astype(np.float32)
    loss = F.cross_entropy(model(mc.Tensor(x)), np.array([0, 1, 2, 0]))
    loss.backward()
    for name, value in model.base.state_dict().items():           # running statistics untouched
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # fine-tune the last stage: its BatchNorm layers train (batch statistics), the rest stay frozen
    transfer.fine_tune_from(model, "layer4")
    model.train()
    assert model.base.layer4[0].bn1.training and model.base.layer4[0].downsample[1].training
    assert not model.base.layer3[1].bn2.training and not model.base.bn1.training
    model(mc.Tensor(x))
    changed = [k for k, v in model.base.state_dict().items() if not np.array_equal(v, before[k])]
    assert changed and all(k.startswith("layer4.") for k in changed)
    assert all(p.requires_grad == n.startswith("layer4.") for n, p in model.base.named_parameters())
    model.eval()
    assert not model.base.layer4[0].bn1.training
    transfer.unfreeze(model.base)
    model.train()
    assert model.base.bn1.training

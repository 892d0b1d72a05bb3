"""minicnn.weights: torchvision state_dicts give the PyTorch model's logits; bad files give clear errors.

The PyTorch reference models are built by hand with torch.nn in torchvision's layout
(features.N / avgpool / classifier.N), so torchvision itself is not needed; torch is an
optional test oracle and these tests skip, saying so, where it is not installed.
"""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn as mc
from minicnn import weights
from minicnn.models.vgg import VGG16_CONFIG


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: the PyTorch comparison is skipped "
                                               "(pip install torch to run it)")


def torch_vgg16(num_classes):
    """torchvision.models.vgg16's module tree, written out with torch.nn."""
    torch = _torch()
    nn = torch.nn
    layers, in_channels = [], 3
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = item
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(4096, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model.eval()


def torch_alexnet(num_classes):
    """torchvision.models.alexnet's module tree, written out with torch.nn."""
    torch = _torch()
    nn = torch.nn
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    model.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    model.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True),
                                     nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
                                     nn.Linear(4096, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model.eval()


def _save_and_compare(tmp_path, torch_model, our_model, input_shape, seed=0):
    """Save the torch model's state_dict as a .pth, load it into ours, compare logits on one input."""
    torch = _torch()
    path = tmp_path / "model.pth"
    torch.save(torch_model.state_dict(), path)
    result = weights.load(our_model, path)
    assert result.missing == [] and result.unexpected == [] and result.mismatched == []
    _compare(torch_model, our_model, input_shape, seed)
    return path


def _compare(torch_model, our_model, input_shape, seed=0):
    """Both models in eval mode on one random input: the same outputs to float32 tolerance."""
    torch = _torch()
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    our_model.eval()
    with mc.no_grad():
        got = our_model(mc.Tensor(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_vgg16_torchvision_state_dict_gives_pytorch_logits():
    torch = _torch()
    torch.manual_seed(0)
    reference = torch_vgg16(num_classes=10)
    ours = mc.models.vgg16(num_classes=10)
    # the state_dict itself (torch tensors) rather than a 0.5 GB file: the AlexNet test reads a .pth
    state = reference.state_dict()
    assert weights.load(ours, state).missing == []
    _compare(reference, ours, (1, 3, 224, 224))
    # 64x64 gives 2x2 feature maps, which the adaptive pooling spreads to 7x7 (as torchvision's does)
    _compare(reference, ours, (2, 3, 64, 64))
    # the same file into a feature extractor: the classifier is dropped, the features agree
    base = mc.models.vgg16(include_top=False)
    result = weights.load(base, state)
    assert "fc8.weight" not in result.loaded and result.unexpected == []
    _compare(reference.features, base, (1, 3, 32, 32))


def test_alexnet_torchvision_state_dict_gives_pytorch_logits(tmp_path):
    torch = _torch()
    torch.manual_seed(1)
    reference, ours = torch_alexnet(num_classes=1000), mc.models.alexnet_torchvision()
    _save_and_compare(tmp_path, reference, ours, (1, 3, 224, 224))
    _compare(reference, ours, (1, 3, 227, 227))      # also 6x6 feature maps
    _compare(reference, ours, (2, 3, 100, 100))      # 2x2 feature maps, spread to 6x6


def test_adaptive_avg_pool_matches_torch_and_gradcheck():
    torch = _torch()
    pool = mc.models.AdaptiveAvgPool2d((3, 5))
    x = mc.Tensor(np.random.default_rng(0).standard_normal((2, 3, 7, 4)), requires_grad=True)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.data), (3, 5)).numpy()
    np.testing.assert_allclose(pool(x).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert mc.gradcheck(pool, [x])


# --------------------------------------------------------------------------- no torch needed below
def test_names_map_covers_every_parameter():
    for arch, build in (("vgg16", mc.models.vgg16), ("alexnet_torchvision", mc.models.alexnet_torchvision)):
        ours = {name.rpartition(".")[0] for name, _ in build(include_top=False).named_parameters()}
        assert set(weights.TORCHVISION_NAMES[arch].values()) == ours | {"fc6", "fc7", "fc8"}, arch


def _alexnet_tv_state(include_top=True):
    """A torchvision-named AlexNet state_dict with random values, made without torch."""
    model = mc.models.alexnet_torchvision(include_top=include_top)
    names = {ours: theirs for theirs, ours in weights.TORCHVISION_NAMES["alexnet_torchvision"].items()}
    state = OrderedDict()
    for name, value in model.state_dict().items():
        layer, _, kind = name.rpartition(".")
        state[f"{names[layer]}.{kind}"] = value
    return model, state


def test_npz_roundtrip_and_torchvision_names_from_npz(tmp_path):
    source, state = _alexnet_tv_state(include_top=False)
    path = tmp_path / "alexnet.npz"
    np.savez(path, **state)
    target = mc.models.alexnet_torchvision(include_top=False)
    weights.load(target, path)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # our own names, saved by save_npz
    small = mc.models.alexnet_small()
    weights.save_npz(small, tmp_path / "small.npz")
    again = mc.models.alexnet_small()
    weights.load(again, tmp_path / "small.npz")
    np.testing.assert_array_equal(small.conv3.weight.data, again.conv3.weight.data)


def test_new_number_of_classes_needs_strict_false():
    _, state = _alexnet_tv_state()
    model = mc.models.alexnet_torchvision(num_classes=5)
    with pytest.raises(ValueError, match=r"'classifier.6.weight' \(fc8.weight here\) has shape \(1000, 4096\)"):
        weights.load(model, state)
    result = weights.load(model, state, strict=False)
    assert result.mismatched == ["fc8.weight", "fc8.bias"]
    np.testing.assert_array_equal(model.conv1.weight.data, state["features.0.weight"])


def test_errors_name_the_entry(tmp_path):
    _, state = _alexnet_tv_state(include_top=False)
    bad = OrderedDict(state)
    bad["features.3.weight"] = bad["features.3.weight"][:, :10]
    with pytest.raises(ValueError, match=r"'features.3.weight' \(conv2.weight here\)"):
        weights.load(mc.models.alexnet_torchvision(include_top=False), bad)
    # torchvision's AlexNet into the small one: same names, other shapes
    with pytest.raises(ValueError, match=r"'features.0.weight' \(conv1.weight here\) has shape \(64, 3, 11, 11\)"):
        weights.load(mc.models.alexnet_small(), state)
    # a file of some other network: every parameter is missing
    with pytest.raises(KeyError, match="different architecture"):
        weights.load(mc.models.alexnet_small(), {"layer.weight": np.zeros(3, np.float32)})
    # a stray layer in a torchvision file
    stray = OrderedDict(state)
    stray["features.1.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"features\.1"):
        weights.load(mc.models.alexnet_torchvision(include_top=False), stray)
    # missing entries of our own names
    partial = mc.models.alexnet_small().state_dict()
    del partial["conv2.bias"]
    with pytest.raises(KeyError, match="conv2.bias"):
        weights.load(mc.models.alexnet_small(), partial)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        weights.load(mc.models.alexnet_small(), tmp_path / "nothing.pth")


def test_preprocessing():
    pre = weights.preprocessing("vgg16")
    images = np.full((2, 3, 4, 4), 255, dtype=np.uint8)
    out = pre(images)
    np.testing.assert_allclose(out[0, :, 0, 0], (1 - np.array(weights.IMAGENET_MEAN)) / np.array(weights.IMAGENET_STD),
                               rtol=1e-6)
    assert out.dtype == np.float32 and pre(images[0]).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="channel first"):
        pre(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="known"):
        weights.preprocessing("resnet50")
    assert weights.center_crop(np.zeros((1, 3, 256, 256)), 224).shape == (1, 3, 224, 224)


def test_preprocessing_is_a_loader_transform():
    pre = weights.preprocessing("vgg16")
    images = np.random.default_rng(0).random((5, 3, 6, 6)).astype(np.float32)
    dataset = mc.data.ArrayDataset(images, np.arange(5) % 2)
    batches = list(mc.data.DataLoader(dataset, batch_size=2, transform=pre))
    np.testing.assert_allclose(np.concatenate([x for x, _ in batches]), pre(images), rtol=1e-6)
    with_crop = mc.data.DataLoader(dataset, batch_size=5, transform=mc.data.Compose([mc.data.CenterCrop(4), pre]))
    assert next(iter(with_crop))[0].shape == (5, 3, 4, 4)


def test_a_transform_the_loader_cannot_call_is_refused_where_it_is_given():
    dataset = mc.data.ArrayDataset(np.zeros((2, 3, 4, 4), np.float32), np.array([0, 1]))
    for transform in (lambda image: image, lambda image, rng, size: image):
        with pytest.raises(TypeError, match=r"cannot be called as transform\(image, rng\).*lambda image, rng"):
            mc.data.DataLoader(dataset, transform=transform)
        with pytest.raises(TypeError, match=r"Compose: transform .* cannot be called as transform\(image, rng\)"):
            mc.data.Compose([mc.data.CenterCrop(2), transform])
    with pytest.raises(TypeError, match="must be callable"):
        mc.data.DataLoader(dataset, transform="vgg16")
    assert mc.data.DataLoader(dataset, transform=lambda image, rng=None: image * 2).transform is not None


def test_minicnn_checkpoint(tmp_path):
    from minicnn import checkpoint
    model = mc.models.alexnet_small()
    checkpoint.save(tmp_path / "run.npz", model, epoch=3)
    again = mc.models.alexnet_small(include_top=False)          # a checkpoint's top is dropped too
    result = weights.load(again, tmp_path / "run.npz")
    assert "conv5.weight" in result.loaded
    np.testing.assert_array_equal(again.conv5.weight.data, model.conv5.weight.data)

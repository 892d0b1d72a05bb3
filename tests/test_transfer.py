"""minicnn.transfer: frozen layers stay put and cost no gradient; unfreezing trains them again; heads."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.functional as F
from minicnn import backends, optim, transfer


def _images(n=8, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, size, size), dtype=np.float32), rng.integers(0, 3, n)


def _snapshot(model):
    return {name: p.numpy() for name, p in model.named_parameters()}


def _sgd_steps(model, x, y, steps=2, lr=0.1, loss_fn=F.cross_entropy):
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(mc.Tensor(x)), y)
        loss.backward()
        optimizer.step()


@pytest.fixture
def conv_calls(monkeypatch):
    """Record (weight shape, need_dx, need_dw) of every conv2d backward the CPU backend runs."""
    backend = backends.for_array(np.zeros(1, np.float32))
    calls, original = [], backend.conv2d_backward

    def recording(x, w, dy, stride, padding, groups, dilation, need_dx=True, need_dw=True, need_db=True, kept=None):
        calls.append((w.shape, need_dx, need_dw))
        return original(x, w, dy, stride, padding, groups, dilation, need_dx, need_dw, need_db, kept)

    monkeypatch.setattr(backend, "conv2d_backward", recording)
    return calls


def test_frozen_base_is_not_updated_and_gets_no_gradient(conv_calls):
    mc.manual_seed(0)
    model = transfer.transfer_model(mc.models.alexnet_small(), num_classes=3, cut="pool5", dropout=0.0)
    x, y = _images()
    before = _snapshot(model)
    out = model.base(mc.Tensor(x))
    assert not out.requires_grad and out.grad_fn is None       # no graph below the head at all
    _sgd_steps(model, x, y)
    after = _snapshot(model)
    for name in before:
        if name.startswith("base."):
            np.testing.assert_array_equal(before[name], after[name], err_msg=name)
        else:
            assert not np.array_equal(before[name], after[name]), name
    assert all(p.grad is None for p in model.base.parameters())
    assert conv_calls == []                                    # backward never entered the base
    assert transfer.count_parameters(model) == (64 * 3 + 3, sum(p.numel() for p in model.base.parameters()))


def test_fine_tune_from_stops_backward_at_the_lowest_trainable_layer(conv_calls):
    mc.manual_seed(1)
    model = mc.models.alexnet_small(num_classes=3)
    transfer.fine_tune_from(model, "conv4")
    frozen = ["conv1", "conv2", "conv3"]
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == \
        [f"{layer}.{kind}" for layer in frozen for kind in ("weight", "bias")]
    x, y = _images()
    before = _snapshot(model)
    _sgd_steps(model, x, y, steps=1)
    after = _snapshot(model)
    for name in before:
        changed = not np.array_equal(before[name], after[name])
        assert changed == (name.split(".")[0] not in frozen), name
    for layer in frozen:
        assert getattr(model, layer).weight.grad is None
    # conv5 passes a gradient down to conv4; conv4 computes its weight gradient but no input gradient
    assert conv_calls == [((64, 48, 3, 3), True, True), ((96, 48, 3, 3), False, True)]


def test_unfreezing_restores_training(conv_calls):
    mc.manual_seed(2)
    model = mc.models.alexnet_small(num_classes=3)
    transfer.freeze(model)
    x, y = _images()
    with pytest.raises(RuntimeError, match="does not require grad"):
        F.cross_entropy(model(mc.Tensor(x)), y).backward()
    transfer.unfreeze(model)
    before = _snapshot(model)
    _sgd_steps(model, x, y, steps=1)
    after = _snapshot(model)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert len(conv_calls) == 5 and conv_calls[-1][1] is False   # conv1 needs no gradient of the images
    transfer.fine_tune_from(model, 0)                              # index 0: everything trains
    assert transfer.count_parameters(model)[1] == 0


def test_layer_lookup():
    model = transfer.transfer_model(mc.models.alexnet_small(), num_classes=4, cut="pool5")
    names = transfer.layer_names(model)
    assert names[0] == "base.conv1" and names[-3:] == ["head.pool", "head.dropout", "head.fc"]
    transfer.fine_tune_from(model, "base.conv5")
    assert model.base.conv5.weight.requires_grad and not model.base.conv4.weight.requires_grad
    transfer.fine_tune_from(model, -1)                      # by index: only the last layer trains
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.fc.weight", "head.fc.bias"]
    transfer.fine_tune_from(model, "head")                  # a container: from its first layer
    assert not model.base.conv5.weight.requires_grad and model.head.fc.weight.requires_grad
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        transfer.fine_tune_from(model, "conv9")
    with pytest.raises(IndexError, match="out of range"):
        transfer.fine_tune_from(model, 99)
    twice = mc.nn.Sequential(mc.nn.Sequential(mc.nn.ReLU()), mc.nn.Sequential(mc.nn.ReLU()))
    with pytest.raises(ValueError, match="ambiguous"):
        transfer.fine_tune_from(twice, "0")
    with pytest.raises(KeyError, match="no layer 'fc9'"):
        transfer.transfer_model(mc.models.alexnet_small(), num_classes=4, cut="fc9")


def test_transfer_model_shares_the_pretrained_layers():
    pretrained = mc.models.alexnet_small(num_classes=5)
    model = transfer.transfer_model(pretrained, num_classes=7, cut="pool5", train_from="conv5")
    assert model.base.conv1 is pretrained.conv1 and "fc6" not in model.base._modules
    assert model(mc.Tensor(_images(2)[0])).shape == (2, 7)
    assert model(mc.Tensor(_images(2, size=32)[0])).shape == (2, 7)   # pooling head: any input size
    assert not model.base.conv4.weight.requires_grad and model.base.conv5.weight.requires_grad
    by_name = transfer.transfer_model("alexnet_small", num_classes=2)
    assert by_name.head.fc.weight.shape == (1, 64)
    flat = transfer.transfer_model(pretrained, num_classes=3, cut="relu4", pool="flatten", input_shape=(1, 28, 28))
    assert flat.head.fc.weight.shape == (3, 96 * 6 * 6) and flat(mc.Tensor(_images(2)[0])).shape == (2, 3)
    with pytest.raises(ValueError, match="input_shape"):
        transfer.transfer_model(pretrained, num_classes=3, pool="flatten")
    with pytest.raises(ValueError, match="unknown base"):
        transfer.transfer_model("resnet", num_classes=2)


def test_binary_head_uses_one_logit_and_bce():
    head = transfer.classifier_head(16, num_classes=2)
    assert head.fc.out_features == 1
    assert transfer.classifier_head(16, num_classes=5).fc.out_features == 5
    assert transfer.loss_function(5) is F.cross_entropy
    logits = mc.Tensor(np.array([[2.0], [-1.0], [0.5]]), requires_grad=True)
    labels = np.array([1, 0, 0])
    loss = transfer.loss_function(2)(logits, labels)
    z = logits.data[:, 0]
    expected = np.mean(-(labels * np.log(1 / (1 + np.exp(-z))) + (1 - labels) * np.log(1 - 1 / (1 + np.exp(-z)))))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="0 or 1"):
        transfer.binary_cross_entropy_loss(logits, np.array([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        transfer.binary_cross_entropy_loss(mc.Tensor(np.zeros((3, 2))), labels)
    with pytest.raises(ValueError, match=">= 2"):
        transfer.classifier_head(16, num_classes=1)
    model = mc.nn.Sequential(mc.nn.Flatten(), mc.nn.Linear(4, 1))
    model[1].weight.data[:] = 1.0
    model[1].bias.data[:] = 0.0
    x = np.array([[[[1.0, 1.0], [1.0, 1.0]]], [[[-1.0, 0.0], [0.0, 0.0]]]], np.float32)
    assert transfer.predict(model, x).tolist() == [1, 0]
    assert transfer.error_rate(model, x, [1, 1]) == 0.5


def test_fit_cached_trains_the_head_only():
    mc.manual_seed(3)
    model = transfer.transfer_model(mc.models.alexnet_small(), num_classes=3, cut="pool5", dropout=0.0)
    x, y = _images(12)
    before = _snapshot(model)
    history = transfer.fit_cached(model, x, y, epochs=3, optimizer=optim.Adam(model.parameters(), lr=0.05),
                                  batch_size=4, val=(x, y), verbose=False)
    assert len(history) == 3 and history.train_loss[-1] < history.train_loss[0]
    after = _snapshot(model)
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith("base."))
    assert not np.array_equal(before["head.fc.weight"], after["head.fc.weight"])
    transfer.unfreeze(model.base)
    with pytest.raises(ValueError, match="trainable parameters"):
        transfer.fit_cached(model, x, y, epochs=1, optimizer=optim.SGD(model.parameters(), lr=0.1))


def test_one_logit_head_trains_with_fit_and_evaluate():
    mc.manual_seed(4)
    model = transfer.transfer_model(mc.models.alexnet_small(), num_classes=2, cut="pool5", dropout=0.0)
    x, _ = _images(12)
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype(np.int64)
    history = transfer.fit_cached(model, x, y, epochs=2, optimizer=optim.Adam(model.parameters(), lr=0.01),
                                  batch_size=4, val=(x, y), verbose=False)
    assert history.val_top5 == [0.0, 0.0]                  # two classes: the label is always in the top 5
    wrong = transfer.error_rate(model, x, y)
    evaluation = mc.evaluate(model, mc.data.DataLoader(mc.data.ArrayDataset(x, y), batch_size=5),
                             loss_fn=transfer.loss_function(2))
    assert evaluation.top1_error == pytest.approx(wrong)
    logits = transfer.extract_features(model, x)
    assert evaluation.loss == pytest.approx(transfer.binary_cross_entropy_loss(mc.Tensor(logits), y).item(), rel=1e-5)


def parse_transfer_options(argv, digit_labels):
    """The options of `python -m minicnn transfer ARGV`, checked against the digits' labels as the command does."""
    from minicnn import cli
    from minicnn.cli import transfer_demo
    args = cli.build_parser().parse_args(["transfer", *argv])
    transfer_demo.check_options(args, digit_labels)
    return args


def test_demo_pieces(capsys):
    from minicnn.cli import transfer_demo
    labels = np.repeat(np.arange(3), 4)
    names = ["cat", "dog", "cow"]
    picked = transfer_demo._few_shots(labels, 2, np.random.default_rng(0), names)
    assert np.bincount(labels[picked]).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="only 4 examples of cat, fewer than 5 shots"):
        transfer_demo._few_shots(labels, 5, np.random.default_rng(0), names)
    digits = np.repeat(np.arange(10), 30)
    digits = np.r_[digits[digits != 7], np.full(27, 7)]   # the digit 7 has the fewest examples: 27
    for bad in (["--shots", "0"], ["--cut", "fc6"], ["--cut", "relu2", "--fine-tune-from", "conv3"]):
        with pytest.raises(SystemExit):
            parse_transfer_options(bad, digits)
    capsys.readouterr()
    # checked before any pretraining, naming the class by its name (class 2 of the task is the digit 7)
    with pytest.raises(SystemExit):
        parse_transfer_options(["--shots", "28"], digits)
    assert "--shots 28: digit 7 has only 27 training examples; use --shots 27 or less" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_transfer_options(["--face-shots", "100"], digits)
    assert "--face-shots 100" in capsys.readouterr().err
    assert parse_transfer_options(["--shots", "27"], digits).shots == 27
    assert parse_transfer_options(["--cut", "pool5", "--fine-tune-from", "head"], digits).cut == "pool5"
    model = transfer_demo.he_init(mc.models.alexnet_small())
    assert abs(model.conv3.weight.data.std() - np.sqrt(2 / (64 * 9))) < 0.01 and not model.fc6.bias.data.any()


def test_named_base_loads_torchvision_weights(tmp_path):
    source = mc.models.alexnet_torchvision(include_top=False)
    names = {ours: theirs for theirs, ours in mc.weights.TORCHVISION_NAMES["alexnet_torchvision"].items()}
    state = {f"{names[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": v for k, v in source.state_dict().items()}
    np.savez(tmp_path / "alexnet.npz", **state)
    model = transfer.transfer_model("alexnet_torchvision", num_classes=4, weights=tmp_path / "alexnet.npz")
    np.testing.assert_array_equal(model.base.conv5.weight.data, source.conv5.weight.data)
    assert model.head.fc.weight.shape == (4, 256) and transfer.count_parameters(model)[0] == 4 * 256 + 4
    with pytest.raises(ValueError, match="weights= is for a base given by name"):
        transfer.transfer_model(source, num_classes=4, weights=tmp_path / "alexnet.npz")


# --------------------------------------------------------------------------- Keras's switch: module.trainable
def _base_with_batch_norm():
    from collections import OrderedDict
    nn = mc.nn
    mc.manual_seed(3)
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
                                     conv2=nn.Conv2d(4, 4, 3), bn2=nn.BatchNorm2d(4, affine=False), relu2=nn.ReLU()))


def test_trainable_false_freezes_and_keeps_batch_norm_in_inference_through_train():
    base = _base_with_batch_norm()
    model = mc.nn.Sequential(base, mc.nn.GlobalAvgPool2d(), mc.nn.Linear(4, 3))
    base.trainable = False
    assert not base.trainable and not base.conv1.trainable and model.trainable
    assert not any(p.requires_grad for p in base.parameters())
    model.train()                                            # as mc.fit does each epoch
    assert not base.bn1.training and not base.bn2.training   # affine=False too, as in Keras
    assert base.conv1.training and model[2].training
    x, y = _images(size=10)
    frozen = {**_snapshot(base), **{k: v.copy() for k, v in base.state_dict().items()}}
    _sgd_steps(model, x, y)
    for name, value in base.state_dict().items():            # weights and running statistics untouched
        np.testing.assert_array_equal(value, frozen[name], err_msg=name)

    base.trainable = True                                    # the Keras line really unfreezes
    assert base.trainable and all(p.requires_grad for p in base.parameters())
    assert base.bn1.training and base.bn2.training           # back under the model's mode
    model.eval()
    assert not base.bn1.training
    model.train()
    assert base.bn1.training
    _sgd_steps(model, x, y)
    for name, value in base.state_dict().items():            # weights and running statistics move
        if name not in ("conv1.bias", "conv2.bias"):         # (a bias before BatchNorm has no gradient)
            assert not np.array_equal(value, frozen[name]), name


def test_trainable_false_on_a_model_in_eval_mode_stays_in_eval_after_unfreezing():
    base = _base_with_batch_norm().eval()
    base.trainable = False
    base.trainable = True
    assert not base.bn1.training                             # unfreezing does not switch modes
    base.train()
    assert base.bn1.training


def test_keras_fine_tuning_recipe_and_fine_tune_from_agree():
    keras_way = _base_with_batch_norm()
    keras_way.trainable = True
    for layer in list(keras_way.children())[:3]:             # conv1, bn1, relu1 stay frozen
        layer.trainable = False
    ours = transfer.fine_tune_from(_base_with_batch_norm(), "conv2")
    for model in (keras_way, ours):
        model.train()
        assert [n for n, p in model.named_parameters() if p.requires_grad] == ["conv2.weight", "conv2.bias"]
        assert not model.bn1.training and model.bn2.training
    with pytest.raises(TypeError, match="trainable must be True or False"):
        ours.trainable = "no"


def test_freeze_and_unfreeze_are_the_trainable_switch():
    base = _base_with_batch_norm()
    assert transfer.freeze(base) is base and not base.trainable and not base.bn1.training
    assert transfer.unfreeze(base) is base and base.trainable and base.bn1.training
    base.requires_grad_(False)                              # PyTorch's way: the parameters only
    assert base.trainable and base.bn1.training

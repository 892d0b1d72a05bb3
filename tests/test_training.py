"""fit, evaluate, History, the pictures, and the command line."""

import json

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import nn, optim, visualize
from minicnn.training import topk_errors


def test_topk_errors_by_hand():
    scores = np.array([[0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.3],    # label 1 is the top class
                       [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],    # label 1 is the last: wrong even in top 5
                       [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.0]])   # label 2 is 4th: a top-5 hit, a top-1 miss
    assert topk_errors(scores, [1, 1, 2]) == [2, 1]
    assert topk_errors(np.array([[0.2, 0.8]]), [0], ks=(1, 5)) == [1, 0]  # 2 classes: always in the top 5


class Fixed(nn.Module):
    """A 'model' whose logits are the mean of each input channel: evaluate's arithmetic by hand."""

    def forward(self, x):
        return x.mean(axis=(2, 3))


def test_evaluate_by_hand():
    images = np.zeros((4, 3, 2, 2), np.float32)
    images[0, 0] = 2.0   # predicts class 0
    images[1, 1] = 2.0   # predicts class 1
    images[2, 2] = 2.0   # predicts class 2
    images[3, 0] = 2.0   # predicts class 0
    labels = np.array([0, 1, 0, 0])
    loader = D.DataLoader(D.ArrayDataset(images, labels, classes=["a", "b", "c"]), batch_size=3)
    loss, top1, top5 = mc.evaluate(Fixed(), loader)
    logits = images.mean(axis=(2, 3))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert np.isclose(loss, -log_probs[np.arange(4), labels].mean(), rtol=1e-5)
    assert top1 == 0.25 and top5 == 0.0


def test_ten_crop_evaluate_averages_the_softmax_of_the_ten_views():
    g = np.random.default_rng(0)
    images = g.normal(size=(5, 3, 6, 6)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1])
    ds = D.ArrayDataset(images, labels, classes=["a", "b", "c"])
    loss, top1, _ = mc.evaluate(Fixed(), D.DataLoader(ds, 2, transform=D.TenCrop(4)), ten_crop=True)
    probs = []
    for image in images:
        views = D.TenCrop(4)(image).mean(axis=(2, 3))        # (10, classes) logits
        p = np.exp(views) / np.exp(views).sum(axis=1, keepdims=True)
        probs.append(p.mean(axis=0))
    probs = np.array(probs)
    assert np.isclose(loss, -np.log(probs[np.arange(5), labels]).mean(), rtol=1e-5)
    assert top1 == np.mean(probs.argmax(axis=1) != labels)
    with pytest.raises(ValueError, match="TenCrop"):
        mc.evaluate(Fixed(), D.DataLoader(ds, 2), ten_crop=True)
    with pytest.raises(ValueError, match="ten_crop=True"):
        mc.evaluate(Fixed(), D.DataLoader(ds, 2, transform=D.TenCrop(4)))


def small_digits():
    train, test = D.digits()
    return D.Subset(train, range(300)), D.Subset(test, range(100))


def test_fit_learns_digits_and_records_the_history(tmp_path):
    mc.manual_seed(0)
    train, test = small_digits()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Dropout(0.2), nn.Linear(8 * 4 * 4, 10))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    history = mc.fit(model, D.DataLoader(train, 20, shuffle=True, seed=0), 8, opt,
                     val_loader=D.DataLoader(test, 50), scheduler=optim.StepLR(opt, 6), verbose=False)
    assert history.epoch == list(range(1, 9))
    assert history.lr == [0.1] * 6 + [pytest.approx(0.01)] * 2
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_top1[-1] < 0.2 and history.val_top5[-1] <= history.val_top1[-1]
    assert model.training  # fit leaves the model in training mode; evaluate restores it
    assert mc.evaluate(model, D.DataLoader(test, 50)).top1_error == history.val_top1[-1]
    path = tmp_path / "curves.png"
    history.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mc.History.from_dict(json.loads(json.dumps(history.to_dict()))).to_dict() == history.to_dict()


def test_fit_without_validation_and_a_nan_loss():
    mc.manual_seed(0)
    train, _ = small_digits()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = mc.fit(model, D.DataLoader(train, 50), 1, opt, verbose=False)
    assert history.val_loss == [None]
    model[1].weight.data[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        mc.fit(model, D.DataLoader(train, 50), 1, opt, verbose=False)


def test_pictures(tmp_path):
    model = mc.models.alexnet_small(num_classes=10, in_channels=3, input_size=24)
    visualize.conv1_filters(model, str(tmp_path / "filters.png"))
    grid = visualize.filter_grid(model.conv1.weight.numpy())
    assert grid.shape == (6 * 6 - 1, 6 * 6 - 1, 3)  # 32 kernels of 5x5 in a 6x6 grid with 1-pixel gaps
    assert grid.min() == 0.0 or grid.max() == 1.0   # the largest weight in magnitude reaches an end of the scale
    images = np.random.default_rng(0).random((3, 3, 24, 24)).astype(np.float32)
    visualize.top5_predictions(model, images, [0, 1, 2], [str(i) for i in range(10)], str(tmp_path / "top5.png"))
    for name in ("filters.png", "top5.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no convolution"):
        visualize.conv1_filters(nn.Sequential(nn.Linear(2, 2)), str(tmp_path / "x.png"))


@pytest.mark.gpu
def test_a_short_run_on_the_gpu_follows_the_cpu_curve(tmp_path):
    """The same seed gives the same dropout masks and batches on both devices, so the
    curves differ only by float32 rounding (cuBLAS sums in another order than NumPy)."""
    train, test = small_digits()
    results = {}
    for device in ("cpu", "cuda"):
        mc.manual_seed(0)
        model = mc.models.alexnet_small(num_classes=10, in_channels=1, input_size=16).to(device)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        resize = D.Resize((16, 16))
        history = mc.fit(model, D.DataLoader(train, 30, shuffle=True, seed=0, transform=resize), 2, opt,
                         val_loader=D.DataLoader(test, 50, transform=resize), verbose=False)
        results[device] = (history, model.state_dict())
        mc.save(str(tmp_path / f"{device}.npz"), model, opt, epoch=2, history=history)
    (cpu_history, cpu_weights), (gpu_history, gpu_weights) = results["cpu"], results["cuda"]
    np.testing.assert_allclose(gpu_history.train_loss, cpu_history.train_loss, rtol=1e-3)
    np.testing.assert_allclose(gpu_history.val_loss, cpu_history.val_loss, rtol=1e-3)
    for name, value in cpu_weights.items():
        np.testing.assert_allclose(gpu_weights[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    # a checkpoint written on the GPU loads onto the CPU
    model = mc.models.alexnet_small(num_classes=10, in_channels=1, input_size=16)
    mc.load(str(tmp_path / "cuda.npz"), model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    np.testing.assert_array_equal(model.conv1.weight.numpy(), gpu_weights["conv1.weight"])


def test_filters_share_one_scale_with_zero_grey():
    weight = np.zeros((2, 1, 2, 2))
    weight[0, 0] = [[1.0, -1.0], [0.0, 0.5]]
    weight[1, 0] = [[0.1, -0.1], [0.0, 0.05]]   # the same pattern, ten times weaker
    grid = visualize.filter_grid(weight, columns=2)
    np.testing.assert_allclose(grid[:, :2], [[1.0, 0.0], [0.5, 0.75]])
    np.testing.assert_allclose(grid[:, 3:], [[0.55, 0.45], [0.5, 0.525]])   # faint, not blown up to full contrast


def _capture_figures(monkeypatch):
    """Keep the figures a function draws (it closes them after saving)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    return figures


def test_curves_label_their_axes_in_percent_with_whole_epochs(tmp_path, monkeypatch):
    history = mc.History()
    for e in range(1, 4):
        history.append(epoch=e, lr=0.1, seconds=1.0, train_loss=1.0 / e, train_top1=0.3 / e, train_top5=0.1 / e,
                       val_loss=1.2 / e, val_top1=0.35 / e, val_top5=0.12 / e)
    figures = _capture_figures(monkeypatch)
    history.plot(str(tmp_path / "curves.png"), val_name="test")
    loss_ax, err_ax = figures[0].axes
    assert loss_ax.get_ylabel().startswith("loss") and err_ax.get_ylabel() == "error"
    assert [line.get_label() for line in err_ax.lines] == ["train top-1", "test top-1", "train top-5", "test top-5"]
    np.testing.assert_allclose(err_ax.lines[1].get_ydata(), [35.0, 17.5, 35.0 / 3])   # percent, like the console
    figures[0].canvas.draw()
    assert all(t.get_text().endswith("%") for t in err_ax.get_yticklabels() if t.get_text())
    assert all(float(t) == int(t) for t in err_ax.get_xticks() if 1 <= t <= 3)   # whole epochs only


def test_predictions_name_the_prediction_and_show_a_true_class_outside_the_top5(tmp_path, monkeypatch):
    class Fixed(nn.Module):   # class 9 is always least probable, class 0 most
        def forward(self, x):
            return mc.Tensor(np.tile(np.arange(10, 0, -1, dtype=np.float32), (x.shape[0], 1)))
    figures = _capture_figures(monkeypatch)
    images = np.zeros((2, 1, 8, 8), np.float32)
    visualize.top5_predictions(Fixed(), images, [0, 9], [f"c{i}" for i in range(10)], str(tmp_path / "p.png"))
    axes = figures[0].axes
    assert axes[0].get_title() == "true: c0\npredicted: c0"
    assert axes[1].get_title() == "true: c9\npredicted: c0"
    assert figures[0]._suptitle.get_text()
    labels = [t.get_text() for t in axes[3].get_yticklabels()]
    assert labels[0] == "c0" and labels[-1] == "c9 (#10)"      # the true class, ranked 10th, is drawn too


def test_pick_examples_includes_mistakes_when_there_are_some():
    labels = np.arange(100) % 10
    predicted = labels.copy()
    assert len(visualize.pick_examples(predicted, labels)) == 6
    predicted[[17, 55, 80]] += 1
    picks = visualize.pick_examples(predicted, labels)
    assert len(picks) == 6 and len(set(picks)) == 6 and sum(predicted[picks] != labels[picks]) == 2
    predicted[:90] += 1   # mostly wrong: still two mistakes, the rest right ones
    picks = visualize.pick_examples(predicted, labels)
    assert len(set(picks)) == 6 and sum(predicted[picks] != labels[picks]) == 2
    predicted[:] = labels + 1   # all wrong: six mistakes
    assert len(set(visualize.pick_examples(predicted, labels))) == 6


def test_transfer_picture(tmp_path):
    from minicnn.cli.transfer_demo import transfer_errors
    path = tmp_path / "transfer.png"
    transfer_errors({"digits": {"frozen": [0.1, 0.2], "scratch": [0.4, 0.5]},
                    "faces": {"frozen": [0.3, 0.2], "scratch": [0.3, 0.35]}}, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_non_finite_inputs_are_named_before_the_loss_is_blamed():
    images = np.zeros((8, 1, 4, 4), np.float32)
    images[5, 0, 1, 1] = np.nan
    images[6, 0, 0, 0] = np.inf
    loader = D.DataLoader(D.ArrayDataset(images, np.arange(8) % 2), 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match=r"epoch 1, batch 2: the input images hold NaN and infinity \(image 1, 2 "):
        mc.fit(model, loader, 1, optim.SGD(model.parameters(), lr=0.1), verbose=False)
    with pytest.raises(ValueError, match="evaluate: the input images hold NaN"):
        mc.evaluate(model, loader)


def test_no_batches_names_the_sizes_not_an_option_the_user_may_not_have():
    loader = D.DataLoader(D.ArrayDataset(np.zeros((3, 1, 4, 4), np.float32), np.array([0, 1, 0])), 4, drop_last=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match=r"no batches \(3 images, batch_size 4, drop_last=True\): use a smaller"):
        mc.fit(model, loader, 1, optim.SGD(model.parameters(), lr=0.1), verbose=False)


def test_filters_picture_with_what_training_changed(tmp_path, monkeypatch):
    model = mc.models.alexnet_small(num_classes=10, in_channels=1, input_size=24)
    initial = model.conv1.weight.numpy().copy()
    model.conv1.weight.data = model.conv1.weight.data + 0.1
    figures = _capture_figures(monkeypatch)
    visualize.conv1_filters(model, str(tmp_path / "filters.png"), epochs=3, initial=initial)
    left, right = figures[0].axes
    assert left.get_title().startswith("conv1: 32 filters of 1x5x5, after 3 epochs of training")
    assert "what training changed" in right.get_title() and "+-0.1" in right.get_title()
    np.testing.assert_allclose(right.images[0].get_array(), 1.0, rtol=1e-6)   # +0.1 everywhere: the top of its scale
    with pytest.raises(ValueError, match="initial has shape"):
        visualize.conv1_filters(model, str(tmp_path / "x.png"), initial=initial[:3])

"""mc.callbacks.TensorBoard and train --tensorboard: the event files are read back with
TensorBoard's own reader (EventAccumulator) and checked against what fit measured and
what the model holds."""

import io
import sys

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import cli, nn, optim, visualize
from minicnn.callbacks import Callback, TensorBoard, dead_relu_fractions, enlarged

pytest.importorskip("tensorboardX", reason="tensorboardX is not installed (pip install \".[tensorboard]\"): "
                                           "mc.callbacks.TensorBoard writes with it")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is not installed (pip install \".[tensorboard]\"): the tests read the logs with its reader")


def read(folder):
    """Everything TensorBoard's reader finds in one run folder (no sampling: every event)."""
    accumulator = event_accumulator.EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(run, tag):
    """(steps, values) of a scalar chart."""
    events = run.Scalars(tag)
    return [s.step for s in events], [s.value for s in events]


def close(values, rel=1e-6):
    return pytest.approx(values, rel=rel)    # the events hold float32


def loaders(train_images=120, batch_size=40):
    train, test = D.digits()
    return (D.DataLoader(D.Subset(train, range(train_images)), batch_size, shuffle=True, seed=0),
            D.DataLoader(D.Subset(test, range(60)), 30))


class Recorder(Callback):
    """The weights at each epoch's start and end, and the steps' logs."""

    def __init__(self):
        self.start, self.end, self.batch_logs = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start.append(self.model.state_dict())

    def on_batch_end(self, batch, logs=None):
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(self.model.state_dict())


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """Three epochs of a small network with TensorBoard (and a step chart every 2 steps)."""
    log_dir = tmp_path_factory.mktemp("logs")
    train_loader, val_loader = loaders()
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 10))
    recorder = Recorder()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = mc.fit(model, train_loader, 3, opt, val_loader=val_loader, scheduler=optim.StepLR(opt, 2),
                     callbacks=[recorder, TensorBoard(str(log_dir), update_freq=2)], verbose=False)
    return dict(model=model, history=history, recorder=recorder, train=read(log_dir / "train"),
                validation=read(log_dir / "validation"), val_loader=val_loader)


def test_epoch_scalars_are_what_fit_measured_in_keras_layout(logged_run):
    history, train, validation = logged_run["history"], logged_run["train"], logged_run["validation"]
    assert scalars(train, "epoch_loss") == ([1, 2, 3], close(history.train_loss))
    assert scalars(validation, "epoch_loss") == ([1, 2, 3], close(history.val_loss))
    assert scalars(train, "epoch_top1_error") == ([1, 2, 3], close(history.train_top1))
    assert scalars(validation, "epoch_top5_error") == ([1, 2, 3], close(history.val_top5))
    assert scalars(validation, "epoch_accuracy") == ([1, 2, 3], close([1 - e for e in history.val_top1]))
    assert scalars(train, "epoch_learning_rate") == ([1, 2, 3], close([0.1, 0.1, 0.01]))
    assert "epoch_learning_rate" not in validation.Tags()["scalars"]


def test_step_scalars_every_update_freq_steps(logged_run):
    # 3 steps an epoch, every 2nd step: steps 2, 5, 8 of the run, each the epoch's average so far
    logs = logged_run["recorder"].batch_logs
    assert scalars(logged_run["train"], "batch_loss") == ([2, 5, 8], close([logs[i]["loss"] for i in (1, 4, 7)]))
    assert scalars(logged_run["train"], "batch_top1_error")[0] == [2, 5, 8]


def test_histograms_of_every_parameter_and_its_gradient(logged_run):
    model, train, recorder = logged_run["model"], logged_run["train"], logged_run["recorder"]
    for name, p in model.named_parameters():
        steps = train.Histograms(f"parameters/{name}")
        assert [h.step for h in steps] == [0, 1, 2, 3]      # the start, then after each epoch
        for h, weights in zip(steps, [recorder.start[0][name]] + [end[name] for end in recorder.end]):
            value = h.histogram_value
            assert value.num == weights.size and value.min == pytest.approx(weights.min(), rel=1e-6)
            assert value.max == pytest.approx(weights.max(), rel=1e-6)
            assert value.sum == pytest.approx(weights.sum(), rel=1e-4, abs=1e-6)
        grads = train.Histograms(f"gradients/{name}")
        assert [h.step for h in grads] == [1, 2, 3]
        last = grads[-1].histogram_value                     # the last step's gradient, still in .grad
        assert last.num == p.grad.size and last.sum_squares == pytest.approx((p.grad.astype(np.float64) ** 2).sum(),
                                                                                rel=1e-5)


def test_update_to_weight_ratio_per_parameter(logged_run):
    recorder = logged_run["recorder"]
    for name, _ in logged_run["model"].named_parameters():
        expected = [np.linalg.norm(end[name] - start[name]) / np.linalg.norm(start[name])
                    for start, end in zip(recorder.start, recorder.end)]
        assert scalars(logged_run["train"], f"update_ratio/{name}") == ([1, 2, 3], close(expected, rel=1e-5))


def test_conv1_filters_and_predictions_images(logged_run):
    from PIL import Image

    train, recorder = logged_run["train"], logged_run["recorder"]
    filters = train.Images("conv1_filters")
    assert [i.step for i in filters] == [0, 1, 2, 3]
    shown = np.asarray(Image.open(io.BytesIO(filters[-1].encoded_image_string)))
    expected = enlarged(visualize.filter_grid(recorder.end[-1]["0.weight"])) * 255
    assert shown.shape[:2] == expected.shape and np.abs(shown[..., 0] - expected).max() <= 1.0
    predictions = train.Images("predictions")
    assert [i.step for i in predictions] == [1, 2, 3] and predictions[0].width > 500


def test_dead_relu_share_on_the_fixed_batch(tmp_path):
    # lr 0: nothing moves. Conv channels 1 and 3 and 3 of the 8 dense units get a bias of -1000 (dead),
    # the others one of +1000 (alive, whatever their random weights make of the images)
    train_loader, val_loader = loaders()
    mc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 8), nn.ReLU(),
                          nn.Linear(8, 10))
    model[0].bias.data[:] = 1000.0
    model[0].bias.data[[1, 3]] = -1000.0
    model[3].bias.data[:] = 1000.0
    model[3].bias.data[[0, 2, 5]] = -1000.0
    # every prediction is one class, and fit says so, naming the learning rate of 0 as the likely cause
    with pytest.warns(RuntimeWarning, match="collapsed to a constant output.*a learning rate of 0, with which"):
        mc.fit(model, train_loader, 2, optim.SGD(model.parameters(), lr=0.0), val_loader=val_loader,
               callbacks=[TensorBoard(str(tmp_path))], verbose=False)
    train = read(tmp_path / "train")
    assert scalars(train, "dead_relu/1") == ([1, 2], [0.5, 0.5])
    assert scalars(train, "dead_relu/4") == ([1, 2], [0.375, 0.375])


def test_a_unit_is_dead_only_when_it_is_zero_for_every_image_and_a_reused_relu_counts_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(-self.relu(x))     # the second call's output is all 0

    images = np.zeros((3, 2, 2, 2), np.float32)
    images[0, 0, 1, 1] = 1.0                    # channel 0 is positive in one image at one place only
    fractions, out = dead_relu_fractions(Twice(), images)
    assert fractions == {"relu": 0.5, "relu:2": 1.0} and out.shape == (3, 2, 2, 2)


def test_tensorboard_does_not_change_the_run(tmp_path):
    # the fixed batch comes from a validation loader that augments (its draws depend on its epoch
    # count, which evaluate does not set) and the model has dropout: taking the batch or running
    # it must not shift any draw
    def run(callbacks):
        train, test = D.digits()
        crops = D.RandomCrop(8, padding=1)
        train_loader = D.DataLoader(D.Subset(train, range(80)), 20, shuffle=True, seed=1, transform=crops)
        val_loader = D.DataLoader(D.Subset(test, range(40)), 20, seed=2, transform=crops)
        mc.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                              nn.Linear(256, 10))
        history = mc.fit(model, train_loader, 2, optim.SGD(model.parameters(), lr=0.1), val_loader=val_loader,
                         callbacks=callbacks, verbose=False)
        return history.train_loss + history.val_loss, model.state_dict()

    plain_losses, plain_weights = run(None)
    logged_losses, logged_weights = run([TensorBoard(str(tmp_path), update_freq=1)])
    assert plain_losses == logged_losses
    assert all(np.array_equal(plain_weights[k], logged_weights[k]) for k in plain_weights)
    assert "dead_relu/1" in read(tmp_path / "train").Tags()["scalars"]


def test_bad_settings_and_a_missing_tensorboardx_are_named(monkeypatch, tmp_path, capsys):
    with pytest.raises(ValueError, match="update_freq must be 'epoch', 'batch' or a number of steps"):
        TensorBoard("logs", update_freq="often")
    with pytest.raises(ValueError, match="histogram_freq must be >= 0"):
        TensorBoard("logs", histogram_freq=-1)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)      # what import finds where it is not installed
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        TensorBoard("logs")
    assert cli.main(["train", "--dataset", "digits", "--tensorboard", str(tmp_path / "logs"),
                     "--out", str(tmp_path / "run")]) == 2
    assert "--tensorboard: mc.callbacks.TensorBoard writes its event files with tensorboardX" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()      # refused before anything was written


def test_train_command_writes_tensorboard_logs(tmp_path, capsys):
    logs = tmp_path / "tb"
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--out",
                     str(tmp_path / "run"), "--tensorboard", str(logs)]) == 0
    assert f"tensorboard --logdir {logs}" in capsys.readouterr().out
    train, validation = read(logs / "train"), read(logs / "validation")
    metrics = __import__("json").loads((tmp_path / "run" / "metrics.json").read_text())
    assert scalars(validation, "epoch_top1_error") == ([1], close(metrics["history"]["val_top1"]))
    tags = train.Tags()
    assert "parameters/conv1.weight" in tags["histograms"] and "gradients/fc8.bias" in tags["histograms"]
    assert "update_ratio/conv1.weight" in tags["scalars"] and "dead_relu/relu1" in tags["scalars"]
    assert {"conv1_filters", "predictions"} <= set(tags["images"])

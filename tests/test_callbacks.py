"""fit's callbacks (minicnn/callbacks.py): the hooks and their logs, stopping, EarlyStopping,
ModelCheckpoint and ReduceLROnPlateau, in real fit runs; the rules also against Keras itself
where Keras 3 is installed."""

import os

import numpy as np
import pytest

import minicnn as mc
import minicnn.data as D
from minicnn import nn, optim
from minicnn.callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, metric_names


def digits_loaders(train_images=120, batch_size=40):
    train, test = D.digits()
    return (D.DataLoader(D.Subset(train, range(train_images)), batch_size, shuffle=True, seed=0),
            D.DataLoader(D.Subset(test, range(60)), 30))


def tiny_model():
    mc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))


class Recorder(Callback):
    """Writes down every hook call, the logs, and the weights at each epoch's end."""

    def __init__(self):
        self.events, self.epoch_logs, self.batch_logs, self.weights = [], [], [], []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch))
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))
        self.epoch_logs.append(dict(logs))
        self.weights.append(self.model.state_dict())

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


class Script(Callback):
    """Puts scripted values in place of a logged one, epoch by epoch: the callbacks after it
    in the list see them (a callback may change the logs, as Keras's do)."""

    def __init__(self, name, values):
        self.name, self.values = name, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = self.values[epoch]


def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ the hooks
def test_hooks_run_in_keras_order_with_logs_that_match_the_history():
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, 1, gamma=0.5)
    recorder = Recorder()
    history = mc.fit(model, train_loader, 2, opt, val_loader=val_loader, scheduler=sched, callbacks=[recorder],
                     verbose=False)
    steps = [("batch_end", b) for b in range(3)]
    assert recorder.events == ([("train_begin",), ("epoch_begin", 0)] + steps + [("epoch_end", 0), ("epoch_begin", 1)]
                               + steps + [("epoch_end", 1), ("train_end",)])
    assert recorder.model is model and recorder.optimizer is opt and recorder.scheduler is sched
    assert recorder.history is history and recorder.val_loader is val_loader
    assert recorder.params == dict(epochs=2, initial_epoch=0, steps=3, verbose=False, metrics=metric_names(True))
    for e, logs in enumerate(recorder.epoch_logs):
        assert list(logs) == metric_names(True)
        assert logs["loss"] == history.train_loss[e] and logs["val_loss"] == history.val_loss[e]
        assert logs["top1_error"] == history.train_top1[e] and logs["val_top5_error"] == history.val_top5[e]
        assert logs["val_accuracy"] == pytest.approx(1 - history.val_top1[e])
        assert logs["learning_rate"] == history.lr[e]          # the lr the epoch trained with
    assert history.lr == [0.1, 0.05]
    # a step's logs: the epoch's averages so far, so the last step's are the epoch's
    assert recorder.batch_logs[2]["loss"] == pytest.approx(history.train_loss[0], rel=1e-6)
    assert set(recorder.batch_logs[0]) == {"loss", "top1_error", "top5_error", "accuracy"}


def test_epochs_are_counted_from_the_runs_start_and_logs_lack_val_without_a_val_loader():
    train_loader, _ = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    history = mc.fit(model, train_loader, 4, optim.SGD(model.parameters(), lr=0.1), initial_epoch=2,
                     callbacks=[recorder], verbose=False)
    assert [e for e in recorder.events if e[0] == "epoch_end"] == [("epoch_end", 2), ("epoch_end", 3)]
    assert history.epoch == [3, 4]
    assert list(recorder.epoch_logs[0]) == metric_names(False) == ["loss", "top1_error", "top5_error", "accuracy",
                                                                   "learning_rate"]


def test_stop_training_from_a_step_ends_the_epoch_there_and_the_run_after_it():
    class StopAfterTwoSteps(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    history = mc.fit(model, train_loader, 5, optim.SGD(model.parameters(), lr=0.1), val_loader=val_loader,
                     callbacks=[StopAfterTwoSteps(), recorder], verbose=False)
    assert recorder.events == [("train_begin",), ("epoch_begin", 0), ("batch_end", 0), ("batch_end", 1),
                               ("epoch_end", 0), ("train_end",)]
    assert len(history) == 1 and history.val_loss[0] is not None   # the stopped epoch is still validated
    # the epoch's training numbers are those of the steps it ran
    assert history.train_loss[0] == pytest.approx(recorder.batch_logs[1]["loss"], rel=1e-6)


def test_callbacks_must_be_callback_instances():
    train_loader, _ = digits_loaders()
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"the class EarlyStopping: write EarlyStopping\(...\)"):
        mc.fit(model, train_loader, 1, opt, callbacks=[EarlyStopping], verbose=False)
    with pytest.raises(TypeError, match="Callback instances, got function"):
        mc.fit(model, train_loader, 1, opt, callbacks=[lambda logs: None], verbose=False)


# ------------------------------------------------------------------ EarlyStopping
@pytest.mark.parametrize("patience", [0, 2])
def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights(patience):
    # val_loss scripted: best at epoch 2 (0-based), never beaten after it
    scripted = [1.0, 0.8, 0.5, 0.6, 0.55, 0.7, 0.9, 0.9, 0.9, 0.9]
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    stop = EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = mc.fit(model, train_loader, 10, optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     val_loader=val_loader, callbacks=[Script("val_loss", scripted), recorder, stop], verbose=False)
    assert stop.best_epoch == 2 and stop.best == 0.5
    assert stop.stopped_epoch == 2 + max(patience, 1)    # the patience-th epoch in a row without improvement
    assert len(history) == stop.stopped_epoch + 1
    assert same_weights(model.state_dict(), recorder.weights[2])
    assert not same_weights(recorder.weights[2], recorder.weights[-1])   # training did move them after epoch 2


def test_without_restore_best_weights_the_model_keeps_the_last_epochs_weights():
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    stop = EarlyStopping(patience=1)
    mc.fit(model, train_loader, 10, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), val_loader=val_loader,
           callbacks=[Script("val_loss", [1.0, 0.5, 0.7, 0.8, 0.9] + [1.0] * 5), recorder, stop], verbose=False)
    assert stop.stopped_epoch == 2 and len(recorder.weights) == 3
    assert same_weights(model.state_dict(), recorder.weights[-1])


def test_early_stopping_on_a_real_value_that_stops_improving():
    # lr 0: the weights never move, so the real validation loss is the same every epoch
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    stop = EarlyStopping(monitor="val_loss", patience=1)
    history = mc.fit(model, train_loader, 10, optim.SGD(model.parameters(), lr=0.0), val_loader=val_loader,
                     callbacks=[stop], verbose=False)
    assert len(history) == 2 and history.val_loss[0] == history.val_loss[1] and stop.stopped_epoch == 1


def test_early_stopping_modes_min_delta_baseline_and_start_from_epoch():
    def run(scripted, **options):
        train_loader, val_loader = digits_loaders(train_images=40)
        model = tiny_model()
        stop = EarlyStopping(**options)
        name = options.get("monitor", "val_loss")
        history = mc.fit(model, train_loader, len(scripted), optim.SGD(model.parameters(), lr=0.05),
                         val_loader=val_loader, callbacks=[Script(name, scripted), stop], verbose=False)
        return len(history)

    # accuracy: higher is better in mode "auto"
    assert run([0.5, 0.6, 0.7, 0.6, 0.6, 0.6], monitor="val_accuracy", patience=1) == 4
    assert run([0.5, 0.6, 0.7, 0.6, 0.6, 0.6], monitor="val_accuracy", mode="min", patience=1) == 2
    # improvements smaller than min_delta do not count
    assert run([1.0, 0.95, 0.9, 0.85, 0.8, 0.75], min_delta=0.1, patience=1) == 2
    assert run([1.0, 0.95, 0.9, 0.85, 0.8, 0.75], patience=1) == 6
    # a baseline not beaten: epochs since the first count, improving or not
    assert run([1.0, 0.9, 0.9, 0.9, 0.9, 0.9], baseline=0.1, patience=2) == 3
    assert run([1.0, 0.9, 0.9, 0.9, 0.9, 0.9], patience=2) == 4
    # no watching during the warm-up epochs
    assert run([1.0, 2.0, 3.0, 4.0, 3.0, 5.0, 6.0, 7.0], patience=0, start_from_epoch=3) == 6
    assert run([1.0, 2.0, 3.0, 4.0, 3.0, 5.0, 6.0, 7.0], patience=0) == 2


def test_a_monitored_value_fit_does_not_log_is_refused_before_training():
    train_loader, _ = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    with pytest.raises(ValueError, match="monitors 'val_loss', which fit does not log here \\(the val_ values need "
                                         "fit's val_loader\\); it logs: loss, top1_error"):
        mc.fit(model, train_loader, 3, optim.SGD(model.parameters(), lr=0.1),
               callbacks=[recorder, EarlyStopping()], verbose=False)
    assert recorder.events == [("train_begin",)]
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max'"):
        EarlyStopping(mode="maximum")


# ------------------------------------------------------------------ ModelCheckpoint
def test_model_checkpoint_names_files_by_epoch_and_logs_and_they_load(tmp_path):
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save = ModelCheckpoint(str(tmp_path / "run" / "epoch{epoch:02d}-{val_loss:.3f}.npz"))
    history = mc.fit(model, train_loader, 3, opt, val_loader=val_loader, callbacks=[recorder, save], verbose=False)
    names = sorted(os.listdir(tmp_path / "run"))
    assert names == [f"epoch{e + 1:02d}-{history.val_loss[e]:.3f}.npz" for e in range(3)]   # no temporary left
    state = mc.load(str(tmp_path / "run" / names[1]), restore_rng=False)
    assert state["epoch"] == 2 and state["history"].val_loss == history.val_loss[:2]
    assert state["optimizer"]["type"] == "SGD"                      # the whole run: it resumes
    fresh = tiny_model()
    opt2 = optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    mc.load(str(tmp_path / "run" / names[1]), fresh, opt2, restore_rng=False)
    assert same_weights(fresh.state_dict(), recorder.weights[1])


def test_model_checkpoint_save_best_only_and_weights_only(tmp_path):
    scripted = [1.0, 0.8, 0.9, 0.7, 0.75]
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    recorder = Recorder()
    every = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), monitor="val_loss", save_best_only=True,
                            save_weights_only=True)
    fixed = ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True, save_weights_only=True)
    mc.fit(model, train_loader, 5, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), val_loader=val_loader,
           callbacks=[Script("val_loss", scripted), recorder, every, fixed], verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["best-1.npz", "best-2.npz", "best-4.npz", "best.npz"]
    state = mc.load(str(tmp_path / "best.npz"), restore_rng=False)
    assert state["optimizer"] is None and state["epoch"] is None        # weights only
    fresh = tiny_model()
    mc.load(str(tmp_path / "best.npz"), fresh, restore_rng=False)
    assert same_weights(fresh.state_dict(), recorder.weights[3])         # the best epoch's, not the last


def test_model_checkpoint_filepath_naming_a_value_not_logged_is_refused_before_training(tmp_path):
    train_loader, _ = digits_loaders()
    model = tiny_model()
    with pytest.raises(ValueError, match=r"cannot be filled in \(KeyError: 'val_loss'\); it may name epoch and the "
                                         r"logged values: loss, top1_error"):
        mc.fit(model, train_loader, 2, optim.SGD(model.parameters(), lr=0.1),
               callbacks=[ModelCheckpoint(str(tmp_path / "e{epoch}-{val_loss:.2f}.npz"))], verbose=False)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_saved_by_fit_holds_the_lr_a_callback_lowered(tmp_path):
    train_loader, val_loader = digits_loaders()
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    reduce = ReduceLROnPlateau(patience=1, factor=0.5)
    mc.fit(model, train_loader, 3, opt, val_loader=val_loader, checkpoint=str(tmp_path / "c.npz"),
           callbacks=[Script("val_loss", [1.0, 1.0, 1.0]), reduce], verbose=False)
    assert opt.param_groups[0]["lr"] == 0.025
    assert mc.load(str(tmp_path / "c.npz"), restore_rng=False)["optimizer"]["param_groups"][0]["lr"] == 0.025


# ------------------------------------------------------------------ ReduceLROnPlateau
def test_reduce_lr_on_plateau_in_fit_by_hand():
    # patience 2, factor 0.5, cooldown 2, min_lr 0.02; improvements by more than min_delta=0.01
    scripted = [1.0, 0.9, 0.895, 0.9, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    train_loader, val_loader = digits_loaders(train_images=40)
    model = tiny_model()
    opt = optim.SGD([{"params": model[0].parameters()}, {"params": model[4].parameters(), "lr": 0.2}], lr=0.1)
    reduce = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=2, min_lr=0.02, min_delta=0.01)
    history = mc.fit(model, train_loader, len(scripted), opt, val_loader=val_loader,
                     callbacks=[Script("val_loss", scripted), reduce], verbose=False)
    # epochs 2 (0.895 is not better by 0.01) and 3 wait: reduced after epoch 3. Epoch 4 improves
    # (and uses up one epoch of cooldown), the cooldown runs out in epoch 5, which waits, as
    # does 6: reduced again. 7 is cooldown, 8 and 9 wait: reduced, group 0 to min_lr.
    assert history.lr == [0.1] * 4 + [0.05] * 3 + [0.025] * 3 + [0.02]
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.025]   # each group, not below min_lr


keras = None


def keras_or_skip():
    global keras
    if keras is None:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        keras = pytest.importorskip("keras", reason="Keras 3 is not installed (pip install keras): the callbacks "
                                                    "are compared with Keras's own here")
    return keras


def keras_options(options):
    """Keras 3 infers a metric's direction from the compiled metric, which these bare callbacks
    have none of: it is told "max" for accuracy, which ours infers from the name."""
    return dict(options, mode="max") if "accuracy" in options.get("monitor", "") and "mode" not in options else options


def keras_model(lr):
    k = keras_or_skip()
    model = k.Sequential([k.Input((2,)), k.layers.Dense(1)])
    model.compile(optimizer=k.optimizers.SGD(lr), loss="mse")
    return model


class Bench:
    """One of our callbacks driven by hand, with the same values as a Keras callback."""

    def __init__(self, callback, lr=0.1):
        self.model = nn.Sequential(nn.Linear(2, 1))
        callback.model, callback.optimizer = self.model, optim.SGD(self.model.parameters(), lr=lr)
        callback.params = dict(metrics=metric_names(True))
        self.callback = callback

    def lrs(self, values, name="val_loss"):
        self.callback.on_train_begin({})
        out = []
        for epoch, value in enumerate(values):
            self.callback.on_epoch_end(epoch, {name: value})
            out.append(self.callback.optimizer.param_groups[0]["lr"])
        return out


SEQUENCES = [[1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5, 0.6, 0.7, 0.8, 0.4, 0.4, 0.41],
             [3.0, 2.0, 2.0, 2.0, 1.99995, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
             [0.1, 0.2, 0.3, 0.25, 0.35, 0.3, 0.3, 0.3, 0.3, 0.3, 0.4, 0.3, 0.3]]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Keras's, on NumPy 2
@pytest.mark.parametrize("options", [dict(), dict(patience=2, factor=0.5), dict(patience=2, factor=0.5, cooldown=1),
                                     dict(patience=1, cooldown=3, min_lr=0.004), dict(patience=0),
                                     dict(patience=2, min_delta=0.05), dict(monitor="val_accuracy", patience=1)])
def test_reduce_lr_on_plateau_counts_as_keras_does(options):
    k = keras_or_skip()
    name = options.get("monitor", "val_loss")
    for values in SEQUENCES:
        theirs = k.callbacks.ReduceLROnPlateau(**keras_options(options))
        theirs.set_model(keras_model(0.1))
        theirs.on_train_begin()
        expected = []
        for epoch, value in enumerate(values):
            theirs.on_epoch_end(epoch, {name: value})
            expected.append(float(theirs.model.optimizer.learning_rate))
        assert Bench(ReduceLROnPlateau(**options)).lrs(values, name) == pytest.approx(expected, rel=1e-6), values


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("options", [dict(), dict(patience=2), dict(patience=2, min_delta=0.05),
                                     dict(patience=1, baseline=0.5), dict(patience=3, start_from_epoch=4),
                                     dict(monitor="val_accuracy", patience=2), dict(patience=2, mode="max")])
def test_early_stopping_stops_where_keras_does(options):
    k = keras_or_skip()
    name = options.get("monitor", "val_loss")
    for values in SEQUENCES:
        theirs = k.callbacks.EarlyStopping(**keras_options(options))
        theirs.set_model(keras_model(0.1))
        theirs.on_train_begin()
        ours = EarlyStopping(**options)
        bench = Bench(ours)
        ours.on_train_begin({})
        for epoch, value in enumerate(values):
            theirs.on_epoch_end(epoch, {name: value})
            ours.on_epoch_end(epoch, {name: value})
            assert bool(bench.model.stop_training if hasattr(bench.model, "stop_training") else False) \
                == bool(theirs.model.stop_training), (values, epoch)
            if theirs.model.stop_training:
                break
        assert ours.stopped_epoch == theirs.stopped_epoch and ours.best_epoch == theirs.best_epoch, values

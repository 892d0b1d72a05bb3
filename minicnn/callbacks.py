"""Callbacks: code that fit runs at fixed points of training, with Keras's names and meanings.

    stop = mc.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    save = mc.callbacks.ModelCheckpoint("run/epoch{epoch:02d}-{val_loss:.3f}.npz", save_best_only=True)
    mc.fit(model, train_loader, 50, opt, val_loader=val_loader, callbacks=[stop, save])

fit calls each callback's hooks, in the order the list gives them:

    on_train_begin(logs)                   once, before the first epoch (logs is empty)
    on_epoch_begin(epoch, logs)            before each epoch (logs is empty)
    on_batch_end(batch, logs)              after each training step
    on_epoch_end(epoch, logs)              after each epoch, its validation and the scheduler's step
    on_train_end(logs)                     once, after the last epoch (the last epoch's logs)

``epoch`` and ``batch`` are 0-based indices, as in Keras; ``epoch`` counts from the run's
start, so the first epoch of a run resumed with initial_epoch=6 is epoch 6, which History
and the progress line call epoch 7.

The logs (a dict of floats) use Keras's names where Keras has one, and clear names for
minicnn's error rates (fractions in [0, 1], as the paper reports them):

    loss, val_loss                    the cross-entropy (or loss_fn) on the training / validation set
    top1_error, val_top1_error        the share of images whose most probable class is wrong
    top5_error, val_top5_error        the share whose class is not among the five most probable
    accuracy, val_accuracy            1 - top-1 error (Keras's "accuracy")
    learning_rate                     the lr the epoch trained with (of the first parameter group)

The val_ entries are there only when fit has a val_loader. The training entries are
averaged over the epoch's batches in training mode (dropout on); in on_batch_end they are
the averages over the epoch's batches so far (no learning_rate there).

To stop training, a callback sets ``self.model.stop_training = True`` (Keras's way): fit
finishes the step or epoch it is in (the epoch's validation and on_epoch_end included)
and returns.

fit gives every callback, before on_train_begin: ``model``, ``optimizer``, ``scheduler``,
``history`` (the History fit appends to), ``train_loader``, ``val_loader`` and ``params``
(epochs, initial_epoch, steps per epoch, verbose, and metrics: the names the epoch logs
will hold).

In a data-parallel job every rank must get the same callbacks: the logs are the whole job's,
so they decide alike on every rank, and whether fit reads the device every step depends on
them (the ranks add up their sums together). Only rank 0 writes files.
"""

import math
import os
import sys

import numpy as np

from . import checkpoint as _checkpoint
from . import device as _device
from . import distributed as _distributed
from . import nn, visualize
from .tensor import Tensor, no_grad


def epoch_logs(train, val, lr):
    """The logs of an epoch from fit's Evaluations of the training and validation sets
    (val holds None without a validation loader) and the lr it trained with."""
    logs = dict(loss=train.loss, top1_error=train.top1_error, top5_error=train.top5_error,
                accuracy=1.0 - train.top1_error)
    if val.loss is not None:
        logs.update(val_loss=val.loss, val_top1_error=val.top1_error, val_top5_error=val.top5_error,
                    val_accuracy=1.0 - val.top1_error)
    logs["learning_rate"] = lr
    return logs


def batch_logs(loss, top1_error, top5_error):
    """The logs of on_batch_end: the epoch's averages so far."""
    return dict(loss=loss, top1_error=top1_error, top5_error=top5_error, accuracy=1.0 - top1_error)


def metric_names(validation):
    """The names the epoch logs hold, with or without a validation loader."""
    names = ["loss", "top1_error", "top5_error", "accuracy"]
    return names + (["val_" + name for name in names] if validation else []) + ["learning_rate"]


class Callback:
    """The base class: every hook does nothing. Override the ones you need.

    Between on_train_begin and on_train_end, ``self.model``, ``self.optimizer``,
    ``self.scheduler``, ``self.history``, ``self.train_loader``, ``self.val_loader``
    and ``self.params`` are fit's (see the module's docstring).
    """

    model = optimizer = scheduler = history = train_loader = val_loader = None
    params = {}

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def implements_batch_hooks(self):
        """Whether fit must call on_batch_end. On a GPU, fit reads the loss from the device
        only every READ_EVERY batches unless a callback needs every batch's logs (Keras
        asks its callbacks the same question)."""
        return type(self).on_batch_end is not Callback.on_batch_end


class CallbackList:
    """fit's callbacks, each hook called on all of them in the order given."""

    def __init__(self, callbacks, **fit_state):
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if isinstance(callback, type):
                raise TypeError(f"fit's callbacks must be Callback instances, got the class {callback.__name__}: "
                                f"write {callback.__name__}(...)")
            if not isinstance(callback, Callback):
                raise TypeError(f"fit's callbacks must be mc.callbacks.Callback instances, got "
                                f"{type(callback).__name__}")
        for callback in callbacks:
            for name, value in fit_state.items():
                setattr(callback, name, value)
        self.callbacks = callbacks
        self.batch_callbacks = [c for c in callbacks if c.implements_batch_hooks()]

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs if logs is not None else {})

    def on_train_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_end(logs if logs is not None else {})

    def on_epoch_begin(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs if logs is not None else {})

    def on_epoch_end(self, epoch, logs):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_batch_end(self, batch, logs):
        for callback in self.batch_callbacks:
            callback.on_batch_end(batch, logs)


def _say(text):
    """A callback's message (verbose=1), from the process that writes (rank 0)."""
    if _distributed.world().is_main:
        print(text, file=sys.stderr, flush=True)


class _Monitored:
    """The quantity a callback watches: its name in the logs, and which way is better.

    mode "min": lower is better; "max": higher is better; "auto": higher for an accuracy
    (Keras's rule: the name contains "acc"), lower for everything else minicnn logs (loss,
    errors). ``min_delta``: an improvement must beat the reference by more than this.
    """

    def __init__(self, owner, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"{owner}: monitor must be the name of a logged value (a str), got {monitor!r}")
        self.owner, self.name, self.min_delta = owner, monitor, abs(float(min_delta))
        self.higher_is_better = mode == "max" or (mode == "auto" and "acc" in monitor)

    def worst(self):
        return -math.inf if self.higher_is_better else math.inf

    def improved(self, current, reference):
        if self.higher_is_better:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def check_logged(self, params):
        """A ValueError, before training starts, when fit will not log the monitored value."""
        names = params.get("metrics", [])
        if self.name not in names:
            hint = " (the val_ values need fit's val_loader)" if self.name.startswith("val_") else ""
            raise ValueError(f"{self.owner} monitors {self.name!r}, which fit does not log here{hint}; "
                             f"it logs: {', '.join(names)}")


class EarlyStopping(Callback):
    """Stop training when the monitored value has stopped improving (Keras's EarlyStopping).

    monitor: a name of the logs ("val_loss", "val_top1_error", "val_accuracy", "loss" ...).
    min_delta: a change of less than this does not count as an improvement.
    patience: how many epochs without improvement to wait before stopping: the run stops
    after the epoch that is the ``patience``-th in a row not to improve on the best (with
    patience=0, the first one).
    mode: "auto", "min" or "max" (see _Monitored). baseline: a value the monitored one must
    beat; epochs that do not beat it count as not improving, even the first.
    restore_best_weights: at the end of training, load the weights (and buffers) of the
    epoch with the best monitored value; otherwise the model keeps the last epoch's.
    start_from_epoch: epochs not watched at the start (a warm-up).
    After training, ``stopped_epoch`` is the 0-based epoch after which it stopped (0 when
    it did not stop the run) and ``best_epoch`` the 0-based epoch of the best value.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        if int(patience) < 0 or int(start_from_epoch) < 0:
            raise ValueError(f"EarlyStopping: patience and start_from_epoch must be >= 0, got {patience} "
                             f"and {start_from_epoch}")
        self.monitored = _Monitored("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.monitored.check_logged(self.params)
        # all reset here, so that one instance can serve several fits (as in Keras)
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self.monitored.worst(), None

    def on_epoch_end(self, epoch, logs=None):
        current = logs[self.monitor]
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # nothing better seen yet (e.g. the baseline is not beaten): this epoch's weights are the best
            self.best_weights, self.best_epoch = self.model.state_dict(), epoch
        self.wait += 1
        if self.monitored.improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()    # NumPy copies, buffers included
            if self.baseline is None or self.monitored.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            _say(f"epoch {self.stopped_epoch + 1}: early stopping ({self.monitor} did not improve on "
                 f"{self.best:.4g} for {self.wait} epochs)")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _say(f"restoring the weights of the best epoch, {self.best_epoch + 1}")
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save a checkpoint after every epoch, or only when the monitored value improved
    (Keras's ModelCheckpoint), with minicnn's own mc.save: one .npz file, written
    atomically (a crash mid-write leaves the previous file intact).

    filepath: may name the epoch (1-based, as Keras and History count) and any value of
    the logs, with str.format's syntax: "run/epoch{epoch:02d}-{val_loss:.3f}.npz". A
    fixed name is overwritten each time.
    save_weights_only=False: the whole run's state, as fit(checkpoint=...) saves it (model,
    optimizer, scheduler, epoch, history, RNG state), which resumes with
    ``state = mc.load(path, model, opt, sched); mc.fit(..., initial_epoch=state["epoch"],
    history=state["history"])``; True: the model's weights and buffers only, which
    ``mc.load(path, model)`` loads.
    save_best_only: save only when ``monitor`` improved on the best so far (mode as in
    EarlyStopping; initial_value_threshold: the value to beat first).
    In a data-parallel job only rank 0 writes.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", initial_value_threshold=None):
        if not isinstance(filepath, str) or not filepath:
            raise TypeError(f"ModelCheckpoint: filepath must be a non-empty str, got {filepath!r}")
        self.filepath, self.monitor, self.verbose = filepath, monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.monitored = _Monitored("ModelCheckpoint", monitor, mode)
        self.initial_value_threshold = initial_value_threshold

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            self.monitored.check_logged(self.params)
        names = self.params.get("metrics", [])
        try:  # a name the logs will not have fails now, not after the first epoch's minutes
            self.filepath.format(epoch=1, **{name: 0.5 for name in names})
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ModelCheckpoint: the filepath {self.filepath!r} cannot be filled in "
                             f"({type(e).__name__}: {e}); it may name epoch and the logged values: "
                             f"{', '.join(names)}") from e
        self.best = (self.initial_value_threshold if self.initial_value_threshold is not None
                     else self.monitored.worst())

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            current = logs[self.monitor]
            if not self.monitored.improved(current, self.best):
                if self.verbose:
                    _say(f"epoch {epoch + 1}: {self.monitor} did not improve on {self.best:.4g}")
                return
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if not _distributed.world().is_main:
            return
        if self.save_weights_only:
            _checkpoint.save(path, self.model)
        else:
            _checkpoint.save(path, self.model, self.optimizer, scheduler=self.scheduler, epoch=epoch + 1,
                             history=self.history)
        if self.verbose:
            _say(f"epoch {epoch + 1}: saved {path}")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when the monitored value has stopped
    improving (Keras's ReduceLROnPlateau: its arguments, defaults and counting).

    After ``patience`` epochs in a row without an improvement of more than ``min_delta``
    (absolute) on the best value, every parameter group's lr becomes max(lr * factor,
    min_lr); then ``cooldown`` epochs pass before epochs are counted again.

    mc.optim.ReduceLROnPlateau is PyTorch's rule for the same idea, a scheduler for fit's
    ``scheduler=``; they count differently, each as its framework does: PyTorch reduces
    when more than ``patience`` epochs did not improve (this one when ``patience`` did),
    measures the improvement relative to the best (this one absolutely) and waits
    ``cooldown`` whole epochs after a reduction (Keras's cooldown=1 waits none: its
    counter runs out in the epoch it is checked).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must lie in [0, 1) (it multiplies the lr), got {factor}")
        if int(patience) < 0 or int(cooldown) < 0 or min_lr < 0:
            raise ValueError(f"ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0, got {patience}, "
                             f"{cooldown} and {min_lr}")
        self.monitored = _Monitored("ReduceLROnPlateau", monitor, mode, min_delta)
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), min_lr

    def on_train_begin(self, logs=None):
        self.monitored.check_logged(self.params)
        self.best, self.wait, self.cooldown_counter = self.monitored.worst(), 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = logs[self.monitor]
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitored.improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                lowered = False
                for group in self.optimizer.param_groups:
                    if group["lr"] > self.min_lr:
                        group["lr"] = max(group["lr"] * self.factor, self.min_lr)
                        lowered = True
                if lowered:
                    if self.verbose:
                        _say(f"epoch {epoch + 1}: ReduceLROnPlateau reduced the learning rate to "
                             f"{self.optimizer.param_groups[0]['lr']:g}")
                    self.cooldown_counter, self.wait = self.cooldown, 0


# ------------------------------------------------------------------ TensorBoard
FIXED_BATCH_IMAGES = 64     # at most this many images of the fixed batch go through the network each time
PREDICTION_IMAGES = 6       # images in the predictions picture


class TensorBoard(Callback):
    """Write what a run does to TensorBoard's event files, for ``tensorboard --logdir log_dir``.

    Written with tensorboardX (pip install tensorboardX), in Keras's layout:
    log_dir/train and log_dir/validation, so that each chart overlays the two sets.
    Steps are epoch numbers counted from 1 (as History counts them), and for the
    per-step charts the number of steps done.

    Every epoch (scalars): epoch_loss, epoch_top1_error, epoch_top5_error,
    epoch_accuracy (training and validation), epoch_learning_rate.
    Every ``update_freq`` steps, when it is an int ("epoch": never; "batch": 1):
    batch_loss, batch_top1_error, batch_top5_error, batch_accuracy, the epoch's
    averages so far.
    Every ``histogram_freq`` epochs (Keras's rule: epochs 0, f, 2f, ... 0-based; 0: never):
      parameters/<name>, gradients/<name>  histograms of each parameter and of its
                                           gradient (that of the epoch's last step);
                                           the parameters also at the start
      update_ratio/<name>                  ||w_end - w_start|| / ||w_start|| over the epoch
      dead_relu/<module>                   the share of each ReLU's units that output 0 for
                                           every image of the fixed batch (a unit: a channel,
                                           i.e. a conv layer's feature map or a dense layer's
                                           neuron); a ReLU module called twice per forward
                                           (a ResNet block's) gets <module> and <module>:2
      images (write_images):               conv1_filters, the first convolution's kernels on
                                           one scale (visualize.filter_grid), also at the
                                           start; predictions, the first images of the fixed
                                           batch with the model's top-5 classes
                                           (visualize.top5_figure)
    fixed_batch: (images, labels) for dead_relu and predictions (its first 64 images are
    used); by default the first batch of fit's val_loader (its train_loader without one),
    taken once at the start, so every epoch is measured on the same images.
    Events reach the disk within ``flush_secs`` seconds and when training ends, so a live
    TensorBoard follows the run and a run that fails keeps its charts. In a data-parallel
    job only rank 0 writes.
    """

    def __init__(self, log_dir="logs", histogram_freq=1, write_images=True, update_freq="epoch", fixed_batch=None,
                 flush_secs=5):
        try:
            import tensorboardX  # noqa: F401
        except ImportError as e:
            raise ImportError("mc.callbacks.TensorBoard writes its event files with tensorboardX, which is not "
                              "installed: pip install tensorboardX (or pip install \"minicnn[tensorboard]\", "
                              "which brings TensorBoard too)") from e
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq >= 1):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a number of steps >= 1, "
                             f"got {update_freq!r}")
        if int(histogram_freq) < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be >= 0 (0: no histograms), got {histogram_freq}")
        self.log_dir, self.histogram_freq, self.write_images = str(log_dir), int(histogram_freq), write_images
        self.update_freq, self.fixed_batch, self.flush_secs = update_freq, fixed_batch, flush_secs
        self.writers = None

    def implements_batch_hooks(self):
        return self.update_freq != "epoch"

    def on_train_begin(self, logs=None):
        from tensorboardX import SummaryWriter

        if not _distributed.world().is_main:
            return
        self.writers = {split: SummaryWriter(os.path.join(self.log_dir, split), flush_secs=self.flush_secs)
                        for split in ("train", "validation")}
        self.images, self.labels = self._take_fixed_batch()
        step = self.params.get("initial_epoch", 0)
        self._write_parameters(step)
        if self.write_images:
            self._write_filters(step)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.writers is not None and self._diagnostic_epoch(epoch):
            self.start_weights = {name: p.data.copy() for name, p in self.model.named_parameters()}

    def on_batch_end(self, batch, logs=None):
        if self.writers is None or (batch + 1) % self.update_freq:
            return
        step = self.epoch * self.params["steps"] + batch + 1     # the steps done since the run's start
        for name, value in logs.items():
            self.writers["train"].add_scalar("batch_" + name, value, step)

    def on_epoch_end(self, epoch, logs=None):
        if self.writers is None:
            return
        step = epoch + 1
        for name, value in logs.items():
            split = "validation" if name.startswith("val_") else "train"
            self.writers[split].add_scalar("epoch_" + name.removeprefix("val_"), value, step)
        if self._diagnostic_epoch(epoch):
            self._write_parameters(step, gradients=True)
            self._write_update_ratios(step)
            self._write_dead_relus_and_predictions(step)
            if self.write_images:
                self._write_filters(step)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        if self.writers is not None:
            for writer in self.writers.values():
                writer.close()
            self.writers = None

    # ---------------------------------------------------------------- what is written
    def _diagnostic_epoch(self, epoch):
        return self.histogram_freq > 0 and epoch % self.histogram_freq == 0

    def _take_fixed_batch(self):
        if self.fixed_batch is not None:
            images, labels = self.fixed_batch
        else:
            images, labels = first_batch(self.val_loader if self.val_loader is not None else self.train_loader)
        images, labels = np.asarray(images)[:FIXED_BATCH_IMAGES], np.asarray(labels)[:FIXED_BATCH_IMAGES]
        if images.ndim != 4 or len(labels) != len(images):
            raise ValueError(f"TensorBoard: fixed_batch must be (images (N, C, H, W), labels (N,)), got shapes "
                             f"{images.shape} and {labels.shape}")
        return images, labels

    def _write_parameters(self, step, gradients=False):
        for name, p in self.model.named_parameters():
            self._write_histogram(f"parameters/{name}", p.numpy(), step)
            if gradients and p.grad is not None:    # frozen parameters have none
                self._write_histogram(f"gradients/{name}", _device.to_numpy(p.grad), step)

    def _write_histogram(self, tag, values, step):
        # NaN and infinity are left out (tensorboardX's binning would stop the run on them):
        # a run that has them fails at its next step with fit's own error
        values = values[np.isfinite(values)]
        if values.size:
            self.writers["train"].add_histogram(tag, values, step)

    def _write_update_ratios(self, step):
        for name, p in self.model.named_parameters():
            start = self.start_weights[name]
            xp = _device.array_module(start)
            size = float(xp.linalg.norm(start.ravel()))
            if size > 0:                            # a bias that starts at 0 has no ratio in its first epoch
                change = float(xp.linalg.norm((p.data - start).ravel()))
                self.writers["train"].add_scalar(f"update_ratio/{name}", change / size, step)
        self.start_weights = None

    def _write_dead_relus_and_predictions(self, step):
        fractions, logits = dead_relu_fractions(self.model, self.images)
        for name, fraction in fractions.items():
            self.writers["train"].add_scalar(f"dead_relu/{name}", fraction, step)
        if self.write_images and logits.shape[1] >= 2:
            count = min(PREDICTION_IMAGES, len(self.images))
            names = class_names(self.val_loader if self.val_loader is not None else self.train_loader,
                                logits.shape[1])
            figure = visualize.top5_figure(self.model, self.images[:count], self.labels[:count], names,
                                           title=f"after epoch {step}: true and predicted class, the five most "
                                                 f"probable classes (true class in red)")
            self.writers["train"].add_figure("predictions", figure, step)   # closes the figure

    def _write_filters(self, step):
        if any(p.ndim == 4 for p in self.model.parameters()):
            grid = visualize.filter_grid(visualize.first_conv_weight(self.model))
            self.writers["train"].add_image("conv1_filters", enlarged(grid), step,
                                            dataformats="HWC" if grid.ndim == 3 else "HW")


def first_batch(loader):
    """The first (images, labels) of ``loader``, leaving its epoch count where it was (fit
    and the loader number epochs by it: taking a batch must not change what later epochs draw)."""
    epoch = getattr(loader, "epoch", None)
    batches = iter(loader)
    try:
        return next(batches)
    except StopIteration:
        raise ValueError("TensorBoard: the loader gives no batch to take the fixed batch from") from None
    finally:
        if hasattr(batches, "close"):
            batches.close()                         # stops a prefetching thread now
        if epoch is not None:
            loader.set_epoch(epoch)


def class_names(loader, count):
    """The names of ``count`` classes from the loader's dataset (its ``classes``), else "0", "1", ..."""
    names = getattr(getattr(loader, "dataset", None), "classes", None)
    return list(names) if names is not None and len(names) == count else [str(i) for i in range(count)]


def dead_relu_fractions(model, images):
    """({ReLU module name: the share of its units that output 0 for every image}, logits)
    of one forward pass of ``images`` (N, C, H, W) in eval mode, without gradients.

    A unit is a channel of the ReLU's output: a feature map of a conv layer (dead when it is 0
    at every position of every image), a neuron of a dense layer. Such a unit passes no
    gradient back, so it stays dead: a share growing epoch by epoch is a run that is losing
    its network. ReLUs written as F.relu inside a forward (not an nn.ReLU module) are not seen.
    A module called more than once per forward gets an entry per call: name, name:2, ...
    """
    from .training import _dtype_of   # here: training imports this module

    outputs = {}

    def record(name):
        def hook(module, inputs, output):
            calls = sum(1 for key in outputs if key == name or key.startswith(name + ":"))
            outputs[name if calls == 0 else f"{name}:{calls + 1}"] = output.data
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules()
               if isinstance(module, nn.ReLU)]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(Tensor(np.asarray(images), dtype=_dtype_of(model)).to(model.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    fractions = {}
    for name, out in outputs.items():
        xp = _device.array_module(out)
        per_unit = xp.moveaxis(out, 1, 0).reshape(out.shape[1], -1)       # (units, images x positions)
        fractions[name] = float((~(per_unit != 0).any(axis=1)).mean())
    return fractions, logits.numpy()


def enlarged(grid, side=256):
    """A small picture (H, W[, 3]) scaled up by a whole factor, pixels kept sharp, to about
    ``side`` pixels: TensorBoard shows images at their size, and conv1's grid is tiny."""
    scale = max(1, side // max(grid.shape[:2]))
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)

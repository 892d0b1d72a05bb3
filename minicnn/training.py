"""fit and evaluate: the training loop, the paper's error rates, and the learning curves.

    history = mc.fit(model, train_loader, epochs=10, optimizer=opt,
                     val_loader=val_loader, scheduler=sched)
    loss, top1, top5 = mc.evaluate(model, test_loader)
    history.plot("curves.png")

Error rates are fractions in [0, 1], as the paper reports them: top-1 error is
the share of images whose most probable class is wrong, top-5 error the share
whose correct class is not among the five most probable.
"""

import sys
import time
from collections import namedtuple

import numpy as np

from . import device as _device
from . import distributed as _distributed
from . import functional as F
from . import random as _random
from .callbacks import CallbackList, batch_logs, epoch_logs, metric_names
from .history import History
from .run_checks import (IGNORE_INDEX, DivergenceGuard, PredictionCounts, ignore_index_of, nonfinite_kinds,
                         nonfinite_output_error)
from .tensor import Tensor, no_grad

Evaluation = namedtuple("Evaluation", ["loss", "top1_error", "top5_error"])


# On a GPU, fit reads the running loss and error counts from the device once per
# READ_EVERY batches (and after the last): each read waits for the GPU to finish what is
# queued, so reading every batch would idle it between batches. In between, the sums
# stay on the device. On the CPU there is nothing to wait for: it reads every batch.
READ_EVERY = 20


def topk_error_counts(probs_or_logits, labels, ks=(1, 5), ignore_index=IGNORE_INDEX):
    """For each k, how many images' label is not among the k highest scores, as 0-d arrays
    of the scores' device (no copy to the host). scores: (N, classes), labels: (N,) ints
    of the same device. With fewer than k classes every label is among the top k.

    An image with a score that is not finite (NaN, infinity) is a miss for every k: a
    model that outputs NaN has classified nothing (NaN compares false with everything,
    so a plain rank would count it as correct). An image labelled ``ignore_index`` is not
    counted at all, as cross_entropy skips it: divide by ``counted_labels``."""
    xp = _device.array_module(probs_or_logits)
    scores = probs_or_logits
    if scores.ndim == 2 and scores.shape[1] == 1:  # one logit z (a binary head) ranks like two logits (0, z)
        scores = xp.concatenate([xp.zeros_like(scores), scores], axis=1)
    counted = labels != ignore_index
    # rank of the true class = how many classes score strictly higher than it
    true_scores = scores[xp.arange(len(labels)), xp.where(counted, labels, 0)]
    rank = (scores > true_scores[:, None]).sum(axis=1)
    unusable = ~xp.isfinite(scores).all(axis=1)
    return [(((rank >= k) | unusable) & counted).sum() for k in ks]


def counted_labels(labels, ignore_index=IGNORE_INDEX):
    """How many of the host ``labels`` count (are not ``ignore_index``): what error rates divide by."""
    return int(np.count_nonzero(np.asarray(labels) != ignore_index))


def topk_errors(probs_or_logits, labels, ks=(1, 5), ignore_index=IGNORE_INDEX):
    """Count, for each k, the images whose label is not among the k highest scores.

    probs_or_logits: NumPy (N, classes); labels: (N,) ints. With fewer than k
    classes every label is among the top k (an error count of 0). A row holding
    NaN or infinity is a miss; a label equal to ``ignore_index`` is not counted.
    """
    return [int(count) for count in topk_error_counts(np.asarray(probs_or_logits), np.asarray(labels), ks,
                                                      ignore_index)]


def _dtype_of(model):
    """The dtype of the model's first floating-point parameter (float32 when it has none)."""
    return next((p.dtype for p in model.parameters() if p.dtype.kind == "f"), np.dtype(np.float32))


def _check_finite(images, where):
    """A batch holding NaN or infinity is named as the cause (rather than the learning rate).
    Host arrays only: checking a device array would wait for the device."""
    if isinstance(images, np.ndarray) and not np.isfinite(images).all():
        bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
        raise ValueError(f"{where}: the input images hold {nonfinite_kinds(images)} (image {', '.join(map(str, bad[:5]))}"
                         f"{' ...' if len(bad) > 5 else ''} of the batch); clean the data or its transform")


def _loss_sum(loss, n):
    """The batch's mean loss times its n counted labels, on the loss's device (0 when every
    label is ignored: the mean of nothing is NaN)."""
    return loss.data * n if n else _device.array_module(loss.data).zeros((), loss.data.dtype)


def _check_batch(images, labels, ten_crop):
    want = 5 if ten_crop else 4
    if images.ndim != want:
        if ten_crop:
            raise ValueError(f"evaluate(ten_crop=True) needs batches of shape (N, 10, C, H, W) -- give the loader "
                             f"a TenCrop transform -- got shape {images.shape}")
        raise ValueError(f"expected image batches of shape (N, C, H, W), got shape {images.shape}"
                         + (" (ten views per image? pass ten_crop=True)" if images.ndim == 5 else ""))
    if len(labels) != len(images):
        raise ValueError(f"a batch has {len(images)} images but {len(labels)} labels")


def evaluate(model, loader, ten_crop=False, loss_fn=None):
    """Loss and top-1 / top-5 error of ``model`` on every batch of ``loader``, in eval mode.

    ten_crop=True: the loader yields ten views per image (a TenCrop transform,
    batches of shape (N, 10, C, H, W)); the prediction for an image is the mean of
    the softmax over its ten views, as in the paper, and the loss is the cross-
    entropy of that mean. loss_fn(logits, labels): F.cross_entropy by default; a
    one-logit (binary) model counts as predicting class 1 when its logit is > 0.
    Returns Evaluation(loss, top1_error, top5_error). A loader sharded over the
    ranks of a data-parallel job (num_replicas > 1) is evaluated by all of them,
    each on its shard, and the sums are added up: every rank returns the result
    for the whole set.

    Images labelled ignore_index (-100, or the loss_fn's own ``ignore_index``) are
    skipped, as the loss skips them. Outputs holding NaN or infinity raise a
    FloatingPointError naming the layer where they first appear (a model that
    outputs NaN has no error rate), and so does a loss that is not finite.
    """
    was_training = model.training
    model.eval()
    device, dtype = model.device, _dtype_of(model)
    ignore_index = ignore_index_of(loss_fn)
    total_loss, errors1, errors5, count, b = 0.0, 0, 0, 0, -1
    try:
        with no_grad():
            for b, (images, labels) in enumerate(loader):
                _check_batch(images, labels, ten_crop)
                _check_finite(images, "evaluate")
                n = counted_labels(labels, ignore_index)
                if ten_crop:
                    views = images.shape[1]
                    inputs = Tensor(images.reshape((-1,) + images.shape[2:]), dtype=dtype).to(device)
                    logits = model(inputs)
                    outputs = logits.numpy()
                    probs = F.softmax(logits, axis=1).numpy().reshape(len(labels), views, -1).mean(axis=1)
                    counted = np.asarray(labels) != ignore_index
                    picked = probs[np.flatnonzero(counted), np.asarray(labels)[counted]]
                    batch_loss = float(-np.log(np.maximum(picked, 1e-30)).sum())
                    scores = probs
                else:
                    inputs = Tensor(images, dtype=dtype).to(device)
                    logits = model(inputs)
                    outputs = scores = logits.numpy()
                    batch_loss = (loss_fn or F.cross_entropy)(logits, labels).item() * n if n else 0.0
                if not np.isfinite(outputs).all():
                    raise nonfinite_output_error(model, inputs, outputs, f"evaluate, batch {b + 1}")
                if not np.isfinite(batch_loss):
                    raise FloatingPointError(f"evaluate, batch {b + 1}: the loss is {batch_loss} although the "
                                             f"model's outputs are finite (the largest in magnitude is "
                                             f"{np.abs(outputs).max():.3g}): weights that grew too big?")
                e1, e5 = topk_errors(scores, labels, ignore_index=ignore_index)
                total_loss, errors1, errors5, count = total_loss + batch_loss, errors1 + e1, errors5 + e5, count + n
    finally:
        model.train(was_training)
    if getattr(loader, "num_replicas", 1) > 1:
        total_loss, errors1, errors5, count = _distributed.world().sum([total_loss, errors1, errors5, count])
    if count == 0:
        raise ValueError("evaluate: the loader gave no images" + (" with a label to count (every label is "
                         f"ignore_index={ignore_index})" if b >= 0 else ""))
    return Evaluation(total_loss / count, errors1 / count, errors5 / count)


class _ProgressBar:
    """One line per epoch. On a terminal a tqdm bar, redrawn as batches finish, that
    stays as the epoch's summary; elsewhere (a log file) only the finished line."""

    def __init__(self, title, total, stream=sys.stderr):
        from tqdm import tqdm

        self.title, self.stream = title, stream
        self.live = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc=title, unit="batch", file=stream, leave=True, dynamic_ncols=True,
                        disable=not self.live)

    def update(self, done, text):
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(done - self.bar.n)

    def finish(self, text):
        if self.live:
            self.bar.set_postfix_str(text)
            self.bar.close()
        else:
            self.stream.write(f"{self.title} {time.perf_counter() - self.start:5.1f}s {text}\n")
            self.stream.flush()


def fit(model, train_loader, epochs, optimizer, val_loader=None, scheduler=None, loss_fn=None,
        initial_epoch=0, history=None, checkpoint=None, checkpoint_extra=None, verbose=True, val_name="val",
        callbacks=None, divergence_factor=100.0):
    """Train ``model`` for epochs initial_epoch+1 .. ``epochs``; return the History.

    Each epoch: model.train(), one pass over ``train_loader`` (forward, loss,
    backward, optimizer.step()), then ``evaluate`` on ``val_loader`` if given,
    then ``scheduler.step(metric)`` with the validation top-1 error (the training
    loss without a validation loader) -- ReduceLROnPlateau uses it, StepLR
    ignores it.

    loss_fn(logits, labels): F.cross_entropy by default.
    verbose: a progress line per epoch on stderr (a tqdm bar on a terminal), in
    which the validation set is called ``val_name`` ("test" when it is the test set).
    checkpoint: a path; the model, optimizer, scheduler, epoch, history and RNG
    state are saved there (atomically) after every epoch, with ``checkpoint_extra``
    (a JSON-able dict) alongside. To resume:

        state = mc.load(path, model, optimizer, scheduler)
        mc.fit(..., initial_epoch=state["epoch"], history=state["history"])

    gives the same result as a run that never stopped.

    callbacks: mc.callbacks.Callback instances (EarlyStopping, ModelCheckpoint,
    ReduceLROnPlateau, TensorBoard or your own), whose hooks fit calls at the start and
    end of training, of each epoch and after each step, with Keras's names and logs
    (minicnn/callbacks.py). A callback stops the run with ``model.stop_training = True``.
    The epoch's hooks run after its validation, scheduler step and history entry, and
    before its checkpoint is saved (so the checkpoint holds an lr a callback lowered).

    What stops a run rather than report numbers that mean nothing (run_checks.py):
    a training loss that is not finite, or that exceeds ``divergence_factor`` times
    the run's first loss (at least 1; None turns that bound off), raises FloatingPointError; so
    do validation outputs holding NaN or infinity (evaluate names the layer). An
    epoch whose every prediction is the same class warns (RuntimeWarning): the
    network collapsed to a constant output. Labels equal to the loss's ignore_index
    (-100 by default) are not counted, as the loss skips them.

    Data parallel (mpiexec; see minicnn/distributed/): with a training loader
    sharded over the ranks, every rank starts from rank 0's weights, runs its slice
    of each batch, and averages the gradients over the global batch before the step;
    the reported metrics are the global batch's, and only rank 0 prints and writes
    the checkpoint. The images are cast to the model's dtype (float64 models train
    on float64 images).
    """
    from .checkpoint import save  # here, not at the top: checkpoint imports this module

    if int(epochs) < int(initial_epoch):
        raise ValueError(f"epochs ({epochs}) must be >= initial_epoch ({initial_epoch})")
    if len(train_loader) == 0:
        dataset, batch_size = getattr(train_loader, "dataset", None), getattr(train_loader, "batch_size", None)
        detail = f" ({len(dataset)} images, batch_size {batch_size}, drop_last=True)" if dataset is not None else ""
        raise ValueError(f"the training loader gives no batches{detail}: use a smaller batch_size or more data")
    loss_fn = loss_fn or F.cross_entropy
    history = history if history is not None else History()
    device, dtype = model.device, _dtype_of(model)
    world = _distributed.world()
    data_parallel = _distributed.prepare_fit(model, train_loader, checkpoint, world)
    ignore_index = ignore_index_of(loss_fn)
    guard = DivergenceGuard(divergence_factor, start=history.train_loss[0] if len(history) else None)
    callbacks = CallbackList(callbacks, model=model, optimizer=optimizer, scheduler=scheduler, history=history,
                             train_loader=train_loader, val_loader=val_loader,
                             params=dict(epochs=int(epochs), initial_epoch=int(initial_epoch), steps=len(train_loader),
                                         verbose=verbose, metrics=metric_names(val_loader is not None)))
    model.stop_training = False                 # Keras's flag: a callback sets it to end the run
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(int(initial_epoch), int(epochs)):
        callbacks.on_epoch_begin(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)  # the epoch's shuffle and augmentation depend only on its number
        model.train()
        bar = _ProgressBar(f"epoch {epoch + 1}/{epochs}", len(train_loader)) if verbose and world.is_main else None
        total_loss, errors1, errors5, count = 0.0, 0, 0, 0
        predictions = PredictionCounts(ignore_index)
        unread, first_unread = None, 1   # device sums (loss * n, top-1, top-5 errors) not read yet
        # a callback's on_batch_end needs every batch's numbers: then the GPU is read every batch
        read_every = READ_EVERY if device == "cuda" and not callbacks.batch_callbacks else 1
        start = time.perf_counter()
        for b, (images, labels) in enumerate(train_loader):
            _check_batch(images, labels, ten_crop=False)
            _check_finite(images, f"epoch {epoch + 1}, batch {b + 1}")
            # dropout numbers this rank's images from their place in the global batch
            with _random.first_sample(train_loader.first_sample(b) if data_parallel else 0):
                logits = model(Tensor(images, dtype=dtype).to(device))
            loss = loss_fn(logits, labels)              # host labels are checked on the host
            optimizer.zero_grad()
            loss.backward()
            if data_parallel:                           # the global batch's mean gradient, on every rank
                _distributed.allreduce_gradients(model.parameters(), len(labels), world)
            optimizer.step()
            n = counted_labels(labels, ignore_index)
            # the batch's sums, computed on the device: nothing is copied to the host here
            device_labels = _device.to_device(np.asarray(labels), device)
            sums = ([_loss_sum(loss, n)] + topk_error_counts(logits.data, device_labels, ignore_index=ignore_index)
                    + [np.int64(n)])
            predictions.add(logits.data, device_labels)
            unread = sums if unread is None else [a + s for a, s in zip(unread, sums)]
            if (b + 1) % read_every and b + 1 < len(train_loader):
                continue
            loss_sum, e1, e5, n_read = (float(_device.to_numpy(a)) for a in unread)   # waits for the GPU, once
            if data_parallel:                           # the global batches' sums
                loss_sum, e1, e5, n_read = world.sum([loss_sum, e1, e5, n_read])
            count += int(n_read)
            where = f"batch {b + 1}" if first_unread == b + 1 else f"batches {first_unread}-{b + 1}"
            guard.check(loss_sum / max(n_read, 1), epoch + 1, where, optimizer.param_groups[0]["lr"])
            total_loss, errors1, errors5 = total_loss + loss_sum, errors1 + int(e1), errors5 + int(e5)
            unread, first_unread = None, b + 2
            if bar:
                bar.update(b + 1, f"loss {total_loss / count:.4f} top-1 err {errors1 / count:.2%}")
            callbacks.on_batch_end(b, batch_logs(total_loss / count, errors1 / count, errors5 / count))
            if model.stop_training:
                break
        train = Evaluation(total_loss / count, errors1 / count, errors5 / count)
        predictions.warn_if_collapsed(epoch + 1, train.loss, optimizer.param_groups[0]["lr"],
                                      world if data_parallel else None)
        val = evaluate(model, val_loader, loss_fn=loss_fn) if val_loader is not None else Evaluation(None, None, None)
        lr = optimizer.param_groups[0]["lr"]  # the lr this epoch trained with
        if scheduler is not None:
            scheduler.step(val.top1_error if val_loader is not None else train.loss)
        history.append(epoch=epoch + 1, lr=lr, seconds=time.perf_counter() - start,
                       train_loss=train.loss, train_top1=train.top1_error, train_top5=train.top5_error,
                       val_loss=val.loss, val_top1=val.top1_error, val_top5=val.top5_error)
        if bar:
            text = f"loss {train.loss:.4f} top-1 err {train.top1_error:.2%} lr {lr:g}"
            if val_loader is not None:
                text += f" | {val_name} loss {val.loss:.4f} top-1 err {val.top1_error:.2%}"
                if logits.shape[-1] > 5:  # with 5 classes or fewer every label is in the top 5
                    text += f" top-5 err {val.top5_error:.2%}"
            bar.finish(text)
        logs = epoch_logs(train, val, lr)
        callbacks.on_epoch_end(epoch, logs)
        if checkpoint is not None and world.is_main:
            save(checkpoint, model, optimizer, scheduler=scheduler, epoch=epoch + 1, history=history,
                 extra=checkpoint_extra)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return history

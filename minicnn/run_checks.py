"""What fit and evaluate check so that no number they report is silently wrong.

- ``first_nonfinite_layer``: the model's outputs hold NaN or infinity; which layer made
  them? (The batch is run once more with a forward hook on every module.)
- ``DivergenceGuard``: stop a run whose training loss is not finite, or has grown past
  ``factor`` times the loss it started from.
- ``PredictionCounts``: warn when every prediction of an epoch is the same class (a
  network collapsed to a constant output; loss stuck near ln(classes)).

Top-k error counting itself (a non-finite score is a miss, an ignored label is not
counted) lives with the error rates in training.py.
"""

import math
import warnings

import numpy as np

from . import device as _device
from .tensor import Tensor, no_grad

IGNORE_INDEX = -100   # F.cross_entropy's default: a sample with this label is not counted
MIN_IMAGES_PER_CLASS = 10   # the collapse warning needs an epoch of at least this many images per labelled class


def ignore_index_of(loss_fn):
    """The label value ``loss_fn`` skips: its ``ignore_index`` (nn.CrossEntropyLoss has one), else -100."""
    return getattr(loss_fn, "ignore_index", IGNORE_INDEX)


def nonfinite_kinds(array):
    """What is not finite in ``array``, for a message: "NaN", "infinity" or "NaN and infinity"."""
    kinds = [kind for kind, hit in (("NaN", np.isnan(array).any()), ("infinity", np.isinf(array).any())) if hit]
    return " and ".join(kinds)


def first_nonfinite_layer(model, inputs):
    """(name, module) of the first module of ``model`` whose output holds NaN or infinity when it
    runs on ``inputs`` (a Tensor), in the order the modules finish -- an inner layer finishes
    before the block that holds it, so this is where the bad numbers first appear. (None, None)
    when every output is finite (the model is not deterministic, or the NaN came later)."""
    found = []

    def watch(name):
        def hook(module, args, output):
            if not found and isinstance(output, Tensor) and not np.isfinite(_device.to_numpy(output.data)).all():
                found.append((name, module))
        return hook

    handles = [module.register_forward_hook(watch(name)) for name, module in model.named_modules()]
    try:
        with no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else (None, None)


def nonfinite_output_error(model, inputs, outputs, where):
    """A FloatingPointError saying that the model's ``outputs`` (a NumPy array) for ``inputs``
    hold NaN or infinity, naming the layer where they first appear and its non-finite weights."""
    name, layer = first_nonfinite_layer(model, inputs)
    message = f"{where}: the model's outputs hold {nonfinite_kinds(outputs)} although its input images are finite"
    if layer is not None:
        label = f"'{name}' ({type(layer).__name__})" if name else f"the model itself ({type(layer).__name__})"
        message += f"; they first appear in the output of layer {label}"
        bad = [f"{key} ({nonfinite_kinds(value)})" for key, value in layer.state_dict().items()
               if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]
        if bad:
            message += (f", whose {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not finite (a run that "
                        f"diverged before it was saved?)")
        else:
            message += ", whose weights are finite: its input is too large for it (weights that grew too big?)"
    return FloatingPointError(message + ". minicnn does not report metrics computed from NaN.")


class DivergenceGuard:
    """Stops a run whose training loss is not finite, or exceeds ``factor`` times its start.

    The start is the first epoch's mean training loss when ``fit`` resumes with a history,
    else the first loss this run reads (the first batch on the CPU), but at least 1 (FLOOR):
    a pretrained model being fine-tuned can start near 0 (0.001), and a loss of 0.16 a few
    batches later is noise, not divergence. factor=None turns the growth check off; a
    non-finite loss always stops the run. A finite loss that grows 100-fold (2.3 -> 230 on
    ten classes) is a run that diverged: the learning rate is too high for it, and its
    weights are on the way to infinity.
    """

    FLOOR = 1.0

    def __init__(self, factor=100.0, start=None):
        if factor is not None and not (isinstance(factor, (int, float)) and factor > 1):
            raise ValueError(f"divergence_factor must be a number > 1 (or None to turn the check off), got {factor!r}")
        self.factor, self.start = factor, start

    def check(self, loss, epoch, where, lr):
        """loss: the mean training loss of the batches just read, ``where`` names them ("batch 7")."""
        advice = f"try a smaller learning rate (it is {lr:g})"
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} in epoch {epoch}, {where}, although the inputs are "
                                     f"finite: the training diverged; {advice}; labels on the GPU outside "
                                     f"[0, classes) give nan too")
        if self.start is None:
            self.start = loss
        reference = max(self.start, self.FLOOR)
        if self.factor is not None and loss > self.factor * reference:
            raise FloatingPointError(f"the loss grew from {self.start:.4g} to {loss:.4g} ({loss / reference:.0f} "
                                     f"times {'its start' if reference == self.start else 1}) by epoch {epoch}, "
                                     f"{where}: the training diverged; {advice}. (fit stops a run whose loss exceeds "
                                     f"divergence_factor={self.factor:g} times its start, or times 1 when it starts "
                                     f"below 1; divergence_factor=None turns this check off)")


class PredictionCounts:
    """How often each class was predicted, and labelled, during one epoch, summed on the
    scores' device (nothing waits for a GPU until ``warn_if_collapsed`` reads the sums)."""

    def __init__(self, ignore_index=IGNORE_INDEX):
        self.ignore_index = ignore_index
        self.predicted = self.labelled = None

    def add(self, scores, labels):
        """scores: (N, classes) logits of the scores' device; labels: (N,) ints of the same device."""
        xp = _device.array_module(scores)
        if scores.shape[1] == 1:    # one logit z (a binary head): class 1 when z > 0, as the top-k count has it
            predicted, classes = (scores[:, 0] > 0).astype(xp.int64), 2
        else:
            predicted, classes = scores.argmax(axis=1), scores.shape[1]
        # weights, not a boolean mask: a mask's size is known only after waiting for the GPU
        counted = (labels != self.ignore_index).astype(xp.float64)
        predicted = xp.bincount(predicted, weights=counted, minlength=classes)
        labelled = xp.bincount(xp.where(counted > 0, labels, 0), weights=counted, minlength=classes)
        if self.predicted is None:
            self.predicted, self.labelled = predicted, labelled
        else:
            self.predicted, self.labelled = self.predicted + predicted, self.labelled + labelled

    def warn_if_collapsed(self, epoch, loss, lr, world=None):
        """Warn (RuntimeWarning) when every prediction of the epoch was one class while its labels
        hold several, at least MIN_IMAGES_PER_CLASS images per class (on a dozen images a head in
        its first epochs may well answer one class): the network gives the same answer whatever
        the image. world: sum over the ranks of a data-parallel job first (every rank must call
        this then)."""
        if self.predicted is None:
            return
        xp = _device.array_module(self.predicted)
        both = _device.to_numpy(xp.concatenate([self.predicted, self.labelled]))    # one wait for the GPU
        predicted, labelled = both[:len(both) // 2], both[len(both) // 2:]
        if world is not None:
            both = world.sum(list(predicted) + list(labelled))
            predicted, labelled = both[:len(predicted)], both[len(predicted):]
        self.predicted = self.labelled = None
        labelled_classes = np.count_nonzero(labelled)
        if np.count_nonzero(predicted) != 1 or labelled_classes < 2 or labelled.sum() < MIN_IMAGES_PER_CLASS * \
                labelled_classes:
            return
        classes = len(predicted)
        learning_rate = ("a learning rate of 0, with which the weights never move" if lr == 0 else
                         f"a learning rate too high (it is {lr:g}), which kills the ReLUs")
        warnings.warn(
            f"epoch {epoch}: every one of the {int(predicted.sum())} training predictions was class "
            f"{int(np.argmax(predicted))}, although the labels hold {labelled_classes} classes: the network "
            f"has collapsed to a constant output (loss {loss:.4f}; a constant guess over {classes} classes costs "
            f"about ln({classes}) = {math.log(classes):.4f}). Likely causes: {learning_rate}, "
            f"or an initialisation whose signal vanishes through the layers (weights too "
            f"small for the depth, e.g. N(0, 0.01) without BatchNorm; try He initialisation, BatchNorm, or a "
            f"smaller learning rate).", RuntimeWarning, stacklevel=3)

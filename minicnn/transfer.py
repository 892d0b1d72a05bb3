"""Transfer learning: reuse a pretrained network's layers, train a new head, fine-tune.

    import minicnn as mc
    from minicnn import transfer
    model = transfer.transfer_model("vgg16", num_classes=5, weights="vgg16.pth")  # frozen base + new head
    mc.fit(model, loader, epochs=5, optimizer=mc.optim.Adam(model.parameters()),
           loss_fn=transfer.loss_function(5))
    transfer.fine_tune_from(model, "conv5_1")      # then unfreeze the top block, train on at a lower lr

Freezing a layer sets its parameters' requires_grad to False. Nothing else is
needed for "a frozen base costs only its forward pass": an op records a graph
only when one of its inputs requires a gradient, and the images never do, so no
graph is recorded below the lowest trainable layer, backward stops there, and
the first trainable convolution computes its weight gradient but no input
gradient. Optimizers skip parameters that do not require grad.

Freezing is Module.trainable, Keras's switch: ``model.base.trainable = False``
is what freeze() does, ``= True`` what unfreeze() does. A frozen BatchNorm layer
stays in eval mode while the model trains (as Keras does for trainable=False): it
keeps normalising with the running statistics it learned in pretraining, which the
frozen layers above it expect, and does not overwrite them with the new task's
(docs/transfer.md says why); Module.train() leaves it there.
"""

from collections import OrderedDict

import numpy as np

from . import functional as F
from . import nn
from .tensor import Tensor, no_grad


# --------------------------------------------------------------------------- freezing
def freeze(module):
    """``module.trainable = False``: freeze every parameter (no gradient, no update) and keep its
    BatchNorm layers in eval mode (they keep their running statistics); returns the module."""
    module.trainable = False
    return module


def unfreeze(module):
    """``module.trainable = True``: every parameter trainable again, the BatchNorm layers following
    the model's train/eval mode again; returns the module."""
    module.trainable = True
    return module


class TransferModel(nn.Sequential):
    """What transfer_model returns: a Sequential with children "base" (frozen) and "head"."""


def layer_names(model):
    """The names of the model's layers (the modules with no children), in forward order,
    e.g. ["conv1", "relu1", ...] or, for a transfer_model, ["base.conv1", ..., "head.fc"]."""
    return [name for name, m in model.named_modules() if name and not m._modules]


def _find_layer(model, layer):
    """The index in layer_names(model) of ``layer``: an int index (negative counts from the end),
    a layer's full name, its last part when unique ("conv4" for "base.conv4"), or a container's
    name, full or its last part when unique ("head", "layer4" for "base.layer4": its first layer)."""
    names = layer_names(model)
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(names) <= layer < len(names):
            raise IndexError(f"layer index {layer} is out of range: the model has {len(names)} layers")
        return int(layer) % len(names)
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a name or an int index, got {type(layer).__name__}")
    found = [i for i, name in enumerate(names) if name == layer or name.endswith("." + layer)]
    if len(found) > 1:
        raise ValueError(f"layer name {layer!r} is ambiguous: {[names[i] for i in found]}; give the full name")
    if not found:
        found = [i for i, name in enumerate(names) if name.startswith(layer + ".")]
    if not found:
        # a container named by its last part: the layers under "<anything>.layer." of one container
        containers = {name[:name.index("." + layer + ".") + len(layer) + 1]
                      for name in names if "." + layer + "." in name}
        if len(containers) > 1:
            raise ValueError(f"layer name {layer!r} is ambiguous: {sorted(containers)}; give the full name")
        found = [i for i, name in enumerate(names) if "." + layer + "." in name]
    if not found:
        raise KeyError(f"the model has no layer {layer!r}; its layers are {names}")
    return found[0]


def fine_tune_from(model, layer):
    """Train ``layer`` and every layer above it; freeze every layer below. Returns the model.

    ``layer`` is a name ("conv4", "base.conv4") or an index into layer_names(model)
    ("fine-tune from layer N"). fine_tune_from(model, 0) unfreezes everything.
    """
    start = _find_layer(model, layer)
    modules = dict(model.named_modules())
    model.trainable = True                     # Keras's recipe: all trainable, then the layers below frozen
    for name in layer_names(model)[:start]:
        modules[name].trainable = False
    return model


def trainable_parameters(model):
    """The parameters that training updates (requires_grad True)."""
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model):
    """(trainable, frozen): how many numbers training updates and how many it leaves alone."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()) - trainable


# --------------------------------------------------------------------------- heads and losses
def classifier_head(in_features, num_classes, dropout=0.5, pool="avg"):
    """Global average pooling, dropout and one dense layer: (N, C, H, W) features -> logits.

    pool="avg" (the default) averages each of the C channels over the image, so
    in_features = C and any input size works; pool="flatten" keeps where things are,
    in_features = C*H*W (for small feature maps, such as digits', where position matters).
    Two classes get ONE logit (the log-odds of class 1, trained with binary
    cross-entropy); more classes get one logit per class (softmax cross-entropy).
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"classifier_head: num_classes must be an int >= 2, got {num_classes!r}")
    if pool not in ("avg", "flatten"):
        raise ValueError(f"classifier_head: pool must be 'avg' or 'flatten', got {pool!r}")
    outputs = 1 if num_classes == 2 else int(num_classes)
    return nn.Sequential(OrderedDict([
        ("pool", nn.GlobalAvgPool2d() if pool == "avg" else nn.Flatten()),
        ("dropout", nn.Dropout(dropout)),
        ("fc", nn.Linear(in_features, outputs)),
    ]))


def binary_cross_entropy_loss(logits, labels):
    """Binary cross-entropy of one-logit outputs (N, 1) against 0/1 labels (N,)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 2 or logits.shape[1] != 1:
        raise ValueError(f"binary_cross_entropy_loss: expected one logit per image, shape (N, 1), got {logits.shape}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("binary_cross_entropy_loss: labels must be 0 or 1")
    return F.binary_cross_entropy_with_logits(logits, labels.reshape(-1, 1))


def loss_function(num_classes):
    """The loss of a classifier_head with ``num_classes`` classes: binary cross-entropy from
    the one logit for 2 classes, softmax cross-entropy otherwise (mc.fit's loss_fn)."""
    return binary_cross_entropy_loss if num_classes == 2 else F.cross_entropy


def predict(model, images, batch_size=256):
    """Class ids for NumPy images (N, C, H, W), in eval mode: argmax of the logits, or
    logit > 0 for a one-logit (binary) model."""
    logits = extract_features(model, images, batch_size)
    return (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits.argmax(axis=1)


def error_rate(model, images, labels, batch_size=256):
    """The share of ``images`` that ``model`` classifies wrongly (works for one-logit heads too)."""
    return float((predict(model, images, batch_size) != np.asarray(labels)).mean())


# --------------------------------------------------------------------------- base + head
def _output_channels(base):
    convs = [m for m in base.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the base has no Conv2d layer: cannot tell how many channels it outputs")
    return convs[-1].out_channels


def _build_named(name, weights_path):
    from . import models, weights
    builders = {"vgg16": models.vgg16, "vgg16_bn": models.vgg16_bn, "resnet18": models.resnet18,
                "alexnet": models.alexnet, "alexnet_torchvision": models.alexnet_torchvision,
                "alexnet_small": models.alexnet_small}
    if name not in builders:
        raise ValueError(f"unknown base {name!r}; known: {sorted(builders)} (or pass a Module)")
    base = builders[name](include_top=False)
    if weights_path is not None:
        weights.load(base, weights_path)
    return base


def _output_shape(base, input_shape):
    """The shape (without the batch) of the base's output for one (C, H, W) input."""
    was_training = base.training
    base.eval()
    try:
        with no_grad():
            return base(Tensor(np.zeros((1,) + tuple(input_shape), np.float32)).to(base.device)).shape[1:]
    finally:
        base.train(was_training)


def transfer_model(base, num_classes, cut=None, weights=None, dropout=0.5, train_from=None, pool="avg",
                   input_shape=None):
    """A pretrained base and a new classifier_head in one TransferModel (a Sequential) with children
    "base" and "head"; the base's BatchNorm layers, frozen, stay in eval mode through train().

    base: a network (a Sequential; its layers are shared, not copied) or the name of one
    of mc.models ("resnet18", "vgg16", "vgg16_bn", "alexnet", "alexnet_torchvision",
    "alexnet_small"), built without its top, with ``weights`` (a path or state_dict, see
    minicnn.weights.load).
    cut: the last layer of ``base`` to keep (a name or an index); the default keeps it
    all, so cut="pool5" drops a full network's dense layers.
    The base is frozen; train_from names the layer from which to fine-tune instead
    (see fine_tune_from). pool: the head's "avg" (global average pooling) or "flatten",
    which needs the (C, H, W) input_shape to size the dense layer.
    """
    if isinstance(base, str):
        base = _build_named(base, weights)
    elif weights is not None:
        raise ValueError("weights= is for a base given by name; load a Module's weights with minicnn.weights.load")
    if not isinstance(base, nn.Module):
        raise TypeError(f"base must be a Module or a model name, got {type(base).__name__}")
    if cut is not None:
        if not isinstance(base, nn.Sequential):
            raise TypeError("cut needs a Sequential base")
        names = list(base._modules)
        index = cut if isinstance(cut, (int, np.integer)) else (names.index(cut) if cut in names else None)
        if index is None or not -len(names) <= index < len(names):
            raise KeyError(f"the base has no layer {cut!r}; its layers are {names}")
        base = base[:int(index) % len(names) + 1]
    if pool == "flatten":
        if input_shape is None:
            raise ValueError("pool='flatten' needs input_shape=(C, H, W) to size the head's dense layer")
        in_features = int(np.prod(_output_shape(base, input_shape)))
    else:
        in_features = _output_channels(base)
    head = classifier_head(in_features, num_classes, dropout, pool)
    model = TransferModel(OrderedDict([("base", base), ("head", head)]))
    freeze(base)
    if train_from is not None:
        fine_tune_from(model, train_from)
    return model.train(model.training)


# --------------------------------------------------------------------------- cached features
def extract_features(base, images, batch_size=128):
    """Run ``base`` once over NumPy images (N, C, H, W), in eval mode with no graph; the outputs
    as one NumPy array. Training a head on these gives up data augmentation (one fixed view
    of each image) but runs the base once instead of once per epoch."""
    was_training = base.training
    base.eval()
    out = []
    try:
        with no_grad():
            for start in range(0, len(images), batch_size):
                out.append(base(Tensor(np.asarray(images[start:start + batch_size])).to(base.device)).numpy())
    finally:
        base.train(was_training)
    return np.concatenate(out)


def fit_cached(model, images, labels, epochs, optimizer, batch_size=32, val=None, seed=0, loss_fn=None,
               verbose=True):
    """Train the head of a transfer_model on cached features of its frozen base; returns mc.fit's History.

    images, labels: NumPy training images (N, C, H, W) and class ids. val: optional
    (images, labels) for validation. The base must be frozen (its weights would never
    change here). Afterwards ``model`` (base + head) classifies images as usual.
    """
    from . import data
    from .training import fit

    if not all(name in model._modules for name in ("base", "head")):
        raise ValueError("fit_cached needs a transfer_model (children 'base' and 'head')")
    if trainable_parameters(model.base):
        raise ValueError("fit_cached: the base has trainable parameters, which cached features would never "
                         "update; freeze(model.base) or train end to end with mc.fit")
    head = model.head
    classes = getattr(head.fc, "out_features", 2)
    loss_fn = loss_fn or loss_function(2 if classes == 1 else classes)

    def loader(x, y, shuffle):
        features = extract_features(model.base, x)
        return data.DataLoader(data.ArrayDataset(features, np.asarray(y, dtype=np.int64)),
                               batch_size=batch_size, shuffle=shuffle, seed=seed, prefetch=0)

    val_loader = loader(*val, shuffle=False) if val is not None else None
    return fit(head, loader(images, labels, shuffle=True), epochs, optimizer, val_loader=val_loader,
               loss_fn=loss_fn, verbose=verbose)

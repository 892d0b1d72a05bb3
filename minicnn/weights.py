"""Pretrained weights: load a file into a model, and prepare images the way it was trained.

    import minicnn as mc
    base = mc.models.vgg16(include_top=False)
    mc.weights.load(base, "vgg16-397923af.pth")     # torchvision's file: the classifier is dropped
    x = mc.weights.preprocessing("vgg16")(images)    # ImageNet mean/std, as torchvision expects

Nothing is downloaded: you give a path (or a dict of arrays). Understood sources:

- a dict name -> array (a state_dict, ours or PyTorch's, NumPy arrays or torch tensors);
- ``.npz`` files, e.g. written by ``np.savez(path, **model.state_dict())``;
- minicnn checkpoints (mc.save), whose model state is read back;
- PyTorch files (``.pth``, ``.pt``, ``.bin``) holding a state_dict, read with torch when it is
  installed (``torch.load(..., weights_only=True)``: no code in the file runs).

Names written by torchvision (``features.0.weight`` ... ``classifier.6.bias``) are mapped to ours
(``conv1_1.weight`` ... ``fc8.bias``) for VGG16, VGG16-BN and torchvision's AlexNet; ResNet-18
uses torchvision's names itself (``layer1.0.bn1.running_mean`` ...). The layout of every array
is already the same (conv OIHW, dense (out, in)), so values are copied as they are. BatchNorm's
buffers (running_mean, running_var, num_batches_tracked) load with the parameters. A file that
does not fit the model raises an error that names the entry.
"""

import os
import zipfile
from collections import OrderedDict, namedtuple

import numpy as np

from .models.torchvision_alexnet import alexnet_torchvision_names
from .models.vgg import vgg16_torchvision_names
from .tensor import Tensor

# torchvision's layer names -> ours, per architecture whose weights we can read.
TORCHVISION_NAMES = OrderedDict([
    ("vgg16", vgg16_torchvision_names()),
    ("vgg16_bn", vgg16_torchvision_names(batch_norm=True)),
    ("alexnet_torchvision", alexnet_torchvision_names()),
])

LoadResult = namedtuple("LoadResult", "loaded missing unexpected mismatched")
LoadResult.__doc__ = """What load() did: names (ours) of the loaded, missing, unexpected and
misshapen entries. With strict=True (the default) the last three are always empty."""


# --------------------------------------------------------------------------- reading files
def _to_numpy(value, key, label):
    """A NumPy array from a NumPy array, a minicnn Tensor, a CuPy array or a torch tensor."""
    if isinstance(value, Tensor):
        return value.numpy()
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return value.get()
    if isinstance(value, (np.ndarray, np.generic, list, tuple, float, int)):
        return np.asarray(value)
    raise TypeError(f"{label}: entry {key!r} is a {type(value).__name__}, not an array")


def _unwrap(obj, label):
    """The state_dict inside what a file held: training scripts often save
    {"state_dict": ..., "epoch": ...} or {"model": ...} rather than the bare dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model_state", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    if hasattr(obj, "state_dict") and callable(obj.state_dict):     # a whole module was saved
        return obj.state_dict()
    raise TypeError(f"{label}: expected a state_dict (a dict of name -> array), got a {type(obj).__name__}")


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{path}: reading a PyTorch file needs torch (pip install torch); or convert it once "
                          f"where torch is installed: np.savez('weights.npz', **{{k: v.numpy() for k, v in "
                          f"torch.load(path).items()}})") from None
    return torch.load(path, map_location="cpu", weights_only=True)


TORCH_EXTENSIONS = (".pth", ".pt", ".bin")


def _read_file(path, label):
    """The state_dict in a file: PyTorch's by extension, else an .npz archive, which is either a
    minicnn checkpoint (mc.save: it holds "meta.json") or a plain name -> array archive."""
    if os.path.splitext(path)[1].lower() in TORCH_EXTENSIONS:
        return _read_torch(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{label}: unknown file type; expected an .npz archive, a minicnn checkpoint "
                         f"or a PyTorch file ({', '.join(TORCH_EXTENSIONS)})")
    with np.load(path, allow_pickle=False) as archive:
        if "meta.json" in archive.files:
            from . import checkpoint                   # here: checkpoint imports the training loop
            return checkpoint.load(path, restore_rng=False)["model"]
        return OrderedDict((key, archive[key]) for key in archive.files)


def read_state_dict(source):
    """The state_dict in ``source`` (a path or a dict) as an OrderedDict of NumPy arrays, and a
    label for error messages."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = f"weights file {path!r}"
        if not os.path.exists(path):
            raise FileNotFoundError(f"{label} does not exist (minicnn never downloads weights: give the path "
                                    f"of a file you have)")
        raw = _read_file(path, label)
    else:
        label = "weights"
        raw = source
    raw = _unwrap(raw, label)
    return OrderedDict((str(k), _to_numpy(v, k, label)) for k, v in raw.items()), label


# --------------------------------------------------------------------------- torchvision names
def _is_torchvision_layout(state):
    return any(k.startswith(("features.", "classifier.")) for k in state)


def _detect_architecture(state, label):
    """The architecture whose torchvision layer names cover every entry of ``state``."""
    layers = {k.rpartition(".")[0] for k in state}
    fits = [arch for arch, names in TORCHVISION_NAMES.items() if layers <= set(names)]
    if not fits:
        known = ", ".join(TORCHVISION_NAMES)
        # the architecture whose layers differ least from the file's, counting both ways
        closest = min(TORCHVISION_NAMES, key=lambda a: len(layers ^ set(TORCHVISION_NAMES[a])))
        strays = sorted(layers - set(TORCHVISION_NAMES[closest]))
        raise ValueError(f"{label} has torchvision's names but fits none of the architectures minicnn can map "
                         f"({known}): closest is {closest}, which has no layer {strays}")
    return fits[0]


def from_torchvision(state, arch, label="weights"):
    """Rename a torchvision state_dict to our names: (renamed OrderedDict, {our name: torchvision name}).

    ``arch`` is "vgg16", "vgg16_bn" or "alexnet_torchvision". Raises a KeyError naming any entry that is
    not a layer of that architecture.
    """
    if arch not in TORCHVISION_NAMES:
        raise ValueError(f"unknown architecture {arch!r}; torchvision names are known for {list(TORCHVISION_NAMES)}")
    names = TORCHVISION_NAMES[arch]
    renamed, original = OrderedDict(), {}
    for key, value in state.items():
        layer, _, kind = key.rpartition(".")
        if layer not in names:
            raise KeyError(f"{label}: entry {key!r} is not a layer of torchvision's {arch} "
                           f"(its layers with parameters are {list(names)})")
        ours = f"{names[layer]}.{kind}"
        renamed[ours] = value
        original[ours] = key
    return renamed, original


# --------------------------------------------------------------------------- loading
def load(model, source, arch=None, strict=True):
    """Copy pretrained weights from ``source`` (a path or a state_dict) into ``model``; returns a LoadResult.

    torchvision names are recognised and mapped (``arch`` picks the architecture, else it is
    detected from the names). When the model has no top (include_top=False), the file's
    top-layer entries (fc6, fc7, fc8: torchvision's classifier) are skipped: that is how
    a pretrained feature extractor is loaded. Everything else must fit: with strict=True a
    missing, unexpected or misshapen entry raises an error naming it; with strict=False those
    entries are skipped (and listed in the result), e.g. to load all but fc8 into
    ``vgg16(num_classes=10)``.
    """
    state, label = read_state_dict(source)
    original = {k: k for k in state}
    if arch is not None or _is_torchvision_layout(state):
        arch = arch or _detect_architecture(state, label)
        state, original = from_torchvision(state, arch, label)

    def theirs(name):   # how the file calls our entry, for the messages
        return f"{original[name]!r} ({name} here)" if original.get(name, name) != name else repr(name)

    own = OrderedDict(model.named_parameters())
    own.update(model.named_buffers())                  # BatchNorm's running statistics
    own_layers = {name.rpartition(".")[0] for name in own}
    unexpected = [k for k in state if k not in own]
    # a feature extractor (no dense layers at all) takes a full file: drop the file's top
    if not any(layer.startswith("fc") for layer in own_layers):
        unexpected_top = [k for k in unexpected if k.startswith("fc")]
        for k in unexpected_top:
            del state[k]
        unexpected = [k for k in unexpected if k not in unexpected_top]
    # files written before PyTorch 0.4.1 have no num_batches_tracked: the model keeps its own count
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != own[k].shape]

    if strict:
        if mismatched:
            k = mismatched[0]
            raise ValueError(f"{label}: entry {theirs(k)} has shape {tuple(state[k].shape)}, but the model's "
                             f"{k} has shape {own[k].shape}"
                             + (f" (and {len(mismatched) - 1} more misfits)" if len(mismatched) > 1 else "")
                             + "; for a new number of classes pass strict=False to skip the last layer, "
                               "or build the model with include_top=False")
        if missing:
            raise KeyError(f"{label} has no entry for the model's parameters {missing}"
                           + (" (the file seems to hold a different architecture)" if len(missing) == len(own) else "")
                           + "; pass strict=False to load the rest")
        if unexpected:
            raise KeyError(f"{label} has entries the model does not have: {[theirs(k) for k in unexpected]}; "
                           f"pass strict=False to skip them")
    fitting = OrderedDict((k, v) for k, v in state.items() if k in own and k not in mismatched)
    model.load_state_dict(fitting, strict=False)
    return LoadResult(list(fitting), missing, unexpected, mismatched)


def save_npz(model, path):
    """Write the model's state_dict to an .npz file that load() (and np.load) read back."""
    np.savez(path, **model.state_dict())


# --------------------------------------------------------------------------- preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # per RGB channel, of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocessing:
    """What a pretrained model expects of its input: RGB images in [0, 1], channel-first,
    normalised per channel as (x - mean) / std, at ``input_size`` (the adaptive pooling of
    the torchvision models accepts other sizes too). Call it on a batch (N, C, H, W) or
    on one image (C, H, W); uint8 images (0..255) are scaled to [0, 1] first. It is also
    a loader transform (``DataLoader(..., transform=prep)`` calls ``prep(image, rng)``;
    preprocessing draws nothing, so it ignores ``rng``)."""

    def __init__(self, mean, std, input_size):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.input_size = input_size

    def __call__(self, images, rng=None):
        images = _to_numpy(images, "images", "preprocessing")
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        images = images.astype(np.float32, copy=False)
        if images.ndim not in (3, 4) or images.shape[-3] != len(self.mean):
            raise ValueError(f"preprocessing: expected images of shape (N, {len(self.mean)}, H, W) or "
                             f"({len(self.mean)}, H, W), channel first, got shape {images.shape}")
        shape = (-1, 1, 1)
        return (images - self.mean.reshape(shape)) / self.std.reshape(shape)

    def __repr__(self):
        return (f"Preprocessing(mean={tuple(self.mean.tolist())}, std={tuple(self.std.tolist())}, "
                f"input_size={self.input_size})")


PREPROCESSING = {
    "vgg16": Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    "vgg16_bn": Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    "resnet18": Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    "alexnet_torchvision": Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    # the paper only subtracts the mean image; we subtract the mean colour, in [0, 1] units
    "alexnet": Preprocessing(IMAGENET_MEAN, (1.0, 1.0, 1.0), 227),
}


def preprocessing(model_name):
    """The Preprocessing a pretrained ``model_name`` ("vgg16", "vgg16_bn", "resnet18", "alexnet_torchvision",
    "alexnet") expects."""
    if model_name not in PREPROCESSING:
        raise ValueError(f"no preprocessing known for {model_name!r}; known: {sorted(PREPROCESSING)}")
    return PREPROCESSING[model_name]


def center_crop(images, size):
    """The central size x size window of (N, C, H, W) or (C, H, W) images (torchvision's CenterCrop)."""
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"center_crop: size {size} is larger than the images ({h}x{w})")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))   # torchvision's rounding
    return images[..., top:top + size, left:left + size]

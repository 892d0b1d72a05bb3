"""Augmentation and preprocessing as the AlexNet paper did it (section 4.1).

A transform is called as ``transform(image, rng)``: ``image`` is one float32
(C, H, W) NumPy array, ``rng`` a ``numpy.random.Generator``. Random transforms
draw only from ``rng``, so the DataLoader, which passes its own seeded
generator, makes every epoch's augmentation reproducible (and a resumed run
draws exactly what an uninterrupted one would). Deterministic transforms ignore
``rng``. Without an ``rng`` a random transform uses a fresh unseeded generator.

Training (the paper): Resize(256) -> RandomCrop(227) -> RandomHorizontalFlip()
-> PCALighting(std=0.1) -> Normalize(mean, std). Testing: Resize(256) ->
CenterCrop(227), or TenCrop(227) to average the predictions of ten views.
"""

import inspect

import numpy as np

from .dataset import Dataset


def _pair(size, what):
    """A size given as an int (a square) or as (height, width), as a (height, width) tuple of ints."""
    try:
        pair = (int(size),) * 2 if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1 or isinstance(size, bool):
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}")
    return pair


def _check_image(image, what):
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{what} expects one image of shape (C, H, W), got {shape}")


def _rng(rng):
    return rng if rng is not None else np.random.default_rng()


def check_transform(transform, where):
    """``transform`` if it can be called as ``transform(image, rng)``, else a TypeError saying how."""
    if not callable(transform):
        raise TypeError(f"{where}: a transform must be callable as transform(image, rng), got {transform!r}")
    try:
        inspect.signature(transform).bind(None, None)
    except ValueError:           # no signature to read (a builtin): it will tell at its first call
        pass
    except TypeError:
        raise TypeError(f"{where}: transform {transform!r} cannot be called as transform(image, rng): the loader "
                        "passes each image with its own seeded generator; wrap a one-argument function f "
                        "as lambda image, rng: f(image)") from None
    return transform


class Compose:
    """Apply transforms one after another, passing the same rng to each."""

    def __init__(self, transforms):
        self.transforms = [check_transform(t, "Compose") for t in transforms]

    def __call__(self, image, rng=None):
        for t in self.transforms:
            image = t(image, rng)
        return image

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Resize:
    """Bilinear resize. An int resizes the shorter side to it, keeping the aspect
    ratio (the paper: "rescaled the image such that the shorter side was of length
    256"); (height, width) resizes to exactly that."""

    def __init__(self, size):
        self.size = size if isinstance(size, (int, np.integer)) else _pair(size, "Resize size")

    def __call__(self, image, rng=None):
        _check_image(image, "Resize")
        from PIL import Image
        c, h, w = image.shape
        if isinstance(self.size, (int, np.integer)):
            scale = self.size / min(h, w)
            out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
        else:
            out_h, out_w = self.size
        if (out_h, out_w) == (h, w):
            return image
        # Pillow's "F" mode holds one float32 channel: resize channel by channel.
        channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[i], dtype=np.float32), mode="F")
                               .resize((out_w, out_h), Image.BILINEAR)) for i in range(c)]
        return np.stack(channels).astype(np.float32)

    def __repr__(self):
        return f"Resize({self.size})"


def _crop(image, top, left, height, width):
    return image[:, top:top + height, left:left + width]


def _check_fits(image, size, what):
    _check_image(image, what)
    if size[0] > image.shape[1] or size[1] > image.shape[2]:
        raise ValueError(f"{what} of size {size} does not fit in an image of size {image.shape[1:]}")


class CenterCrop:
    """The (height, width) window in the middle of the image."""

    def __init__(self, size):
        self.size = _pair(size, "CenterCrop size")

    def __call__(self, image, rng=None):
        _check_fits(image, self.size, "CenterCrop")
        h, w = self.size
        top, left = (image.shape[1] - h) // 2, (image.shape[2] - w) // 2
        return _crop(image, top, left, h, w).copy()

    def __repr__(self):
        return f"CenterCrop({self.size})"


class RandomCrop:
    """A (height, width) window at a uniformly random position (the paper's 224 of 256).

    padding: zero pixels added on every side first, so a crop of the original
    size shifts the image by up to ``padding`` pixels.
    """

    def __init__(self, size, padding=0):
        self.size = _pair(size, "RandomCrop size")
        if padding < 0:
            raise ValueError(f"RandomCrop padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, image, rng=None):
        _check_image(image, "RandomCrop")
        rng = _rng(rng)
        if self.padding:
            p = self.padding
            image = np.pad(image, ((0, 0), (p, p), (p, p)))
        _check_fits(image, self.size, "RandomCrop")
        h, w = self.size
        top = int(rng.integers(0, image.shape[1] - h + 1))
        left = int(rng.integers(0, image.shape[2] - w + 1))
        return _crop(image, top, left, h, w).copy()

    def __repr__(self):
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability p. (Not for digits: a mirrored 2 is no digit.)"""

    def __init__(self, p=0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, image, rng=None):
        _check_image(image, "RandomHorizontalFlip")
        if _rng(rng).random() < self.p:
            return image[:, :, ::-1].copy()
        return image

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Normalize:
    """(image - mean) / std per channel (the paper subtracts the mean image; per-channel
    mean and std is the common simplification)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean has {self.mean.size} channels but std has {self.std.size}")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.ravel().tolist()}")

    def __call__(self, image, rng=None):
        _check_image(image, "Normalize")
        if image.shape[0] != self.mean.shape[0]:
            raise ValueError(f"Normalize has {self.mean.shape[0]} channels, the image has {image.shape[0]}")
        return ((image - self.mean) / self.std).astype(np.float32)

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class PCALighting:
    """The paper's colour augmentation: to every pixel of an image add

        [p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T,   a_i ~ N(0, std), drawn once per image,

    where p_i and l_i are the eigenvectors and eigenvalues of the 3x3 covariance
    of the RGB pixel values of the training set (fit with ``fit_pca_lighting``).
    The change is the same at every pixel and lies along the eigenvectors, so it
    shifts the colour and intensity of the illumination, not the object.
    """

    def __init__(self, eigenvalues, eigenvectors, std=0.1):
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float32)
        self.eigenvectors = np.asarray(eigenvectors, dtype=np.float32)  # column i is p_i
        if self.eigenvalues.shape != (3,) or self.eigenvectors.shape != (3, 3):
            raise ValueError("PCALighting needs 3 eigenvalues and a 3x3 matrix of eigenvectors (RGB images)")
        self.std = std

    def __call__(self, image, rng=None):
        _check_image(image, "PCALighting")
        if image.shape[0] != 3:
            raise ValueError(f"PCALighting works on RGB images (3 channels), got {image.shape[0]} channels")
        alpha = _rng(rng).normal(0.0, self.std, size=3).astype(np.float32)
        shift = self.eigenvectors @ (alpha * self.eigenvalues)  # one RGB offset for the whole image
        return (image + shift.reshape(3, 1, 1)).astype(np.float32)

    def __repr__(self):
        return f"PCALighting(std={self.std})"


class TenCrop:
    """The paper's test-time views: the four corner crops and the centre crop, then
    the same five mirrored. Returns an array of shape (10, C, height, width).

    mirror=False leaves the mirrored five out (shape (5, C, height, width)): for
    images the network never saw mirrored, such as digits.
    """

    def __init__(self, size, mirror=True):
        self.size = _pair(size, "TenCrop size")
        self.mirror = bool(mirror)

    def __call__(self, image, rng=None):
        _check_fits(image, self.size, "TenCrop")
        h, w = self.size
        bottom, right = image.shape[1] - h, image.shape[2] - w
        corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
        views = [_crop(image, top, left, h, w) for top, left in corners]
        if self.mirror:
            views += [v[:, :, ::-1] for v in views]
        return np.stack(views).astype(np.float32)

    def __repr__(self):
        return f"TenCrop({self.size}, mirror={self.mirror})"


# ------------------------------------------------- statistics of a training set
def _sample_images(dataset, max_images, seed):
    if not isinstance(dataset, Dataset) or len(dataset) == 0:
        raise ValueError("expected a non-empty minicnn.data Dataset")
    indices = np.arange(len(dataset))
    if max_images is not None and len(dataset) > max_images:
        indices = np.sort(np.random.default_rng(seed).choice(len(dataset), max_images, replace=False))
    for i in indices:
        yield dataset[int(i)][0]


def fit_normalize(dataset, max_images=None, seed=0):
    """A Normalize with the per-channel mean and std of the dataset's pixels.

    max_images: use a random sample of that many images (with ``seed``) for big sets.
    """
    total, total_sq, count = 0.0, 0.0, 0
    for image in _sample_images(dataset, max_images, seed):
        pixels = image.reshape(image.shape[0], -1).astype(np.float64)
        total = total + pixels.sum(axis=1)
        total_sq = total_sq + (pixels ** 2).sum(axis=1)
        count += pixels.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return Normalize(mean, np.maximum(std, 1e-8))


def fit_pca_lighting(dataset, std=0.1, max_images=None, seed=0):
    """A PCALighting from the eigen-decomposition of the covariance of the RGB pixel
    values of ``dataset`` (the paper: "PCA on the set of RGB pixel values throughout
    the ImageNet training set")."""
    total, outer, count = np.zeros(3), np.zeros((3, 3)), 0
    for image in _sample_images(dataset, max_images, seed):
        if image.shape[0] != 3:
            raise ValueError(f"PCA lighting needs RGB images (3 channels), got {image.shape[0]} channels")
        pixels = image.reshape(3, -1).astype(np.float64)
        total += pixels.sum(axis=1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # symmetric: real, orthonormal columns
    return PCALighting(np.maximum(eigenvalues, 0.0), eigenvectors, std=std)

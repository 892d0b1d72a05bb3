"""Datasets: indexable collections of (image, label) pairs.

An image is a float32 NumPy array of shape (C, H, W) with values in [0, 1]
(before any normalisation); a label is an integer class id. Augmentation is not
part of a dataset: the DataLoader applies it, so one dataset can feed a training
loader (random crops) and a test loader (centre crop) at once.
"""

import numpy as np


class Dataset:
    """The interface every dataset follows: ``len(ds)`` and ``ds[i] -> (image, label)``.

    ``classes`` names the class of each label id (``classes[label]``); ``class_names``
    is the same list under Keras's name.
    """

    classes = ()

    @property
    def class_names(self):
        """The name of each class id, ``class_names[label]`` (Keras's name for ``classes``)."""
        return list(self.classes)

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError

    @property
    def num_classes(self):
        return len(self.classes)

    def _check_index(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return index % len(self)


class ArrayDataset(Dataset):
    """Images and labels held in memory as arrays.

    images: (N, C, H, W). uint8 images (0..255) are stored as they are, which
    takes a quarter of the memory of float32, and scaled to [0, 1] when an image
    is read; floating point images are read as float32 unchanged.
    labels: (N,) integer class ids in [0, len(classes)).
    """

    def __init__(self, images, labels, classes=None):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got shape {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},) to match the images, got {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}")
        if classes is None:
            classes = [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}), got {labels.min()}..{labels.max()}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.classes = list(classes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        index = self._check_index(index)
        image = self.images[index]
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        else:
            image = image.astype(np.float32)
        return image, int(self.labels[index])


class Subset(Dataset):
    """The images of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.classes = dataset.classes

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[self._check_index(index)])]


def split(dataset, fractions_or_counts, seed=0):
    """Split ``dataset`` at random (a fixed ``seed``) into Subsets.

    ``split(ds, [4000, 1000])`` takes counts (they must add up to len(ds));
    ``split(ds, [0.8, 0.2])`` takes fractions (the last part gets the rest).
    """
    n = len(dataset)
    sizes = list(fractions_or_counts)
    if all(isinstance(s, (int, np.integer)) for s in sizes):
        if sum(sizes) != n:
            raise ValueError(f"split counts {sizes} add up to {sum(sizes)}, not to the dataset's {n} images")
    else:
        if any(not 0 <= s <= 1 for s in sizes) or abs(sum(sizes) - 1) > 1e-6:
            raise ValueError(f"split fractions must lie in [0, 1] and add up to 1, got {sizes}")
        counts = [int(round(s * n)) for s in sizes[:-1]]
        sizes = counts + [n - sum(counts)]
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for size in sizes:
        parts.append(Subset(dataset, np.sort(order[start:start + size])))
        start += size
    return parts


def stack(dataset):
    """All of ``dataset`` as two arrays: images (N, C, H, W) float32 and labels (N,) int64."""
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    pairs = [dataset[i] for i in range(len(dataset))]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)

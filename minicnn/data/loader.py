"""DataLoader: turns a Dataset into batches, shuffled with a seed, augmented, prefetched.

All the randomness of an epoch (the shuffle and every augmentation draw) comes
from one generator seeded with (seed, epoch). So epoch 7 is the same whether
the run went straight through or was stopped after epoch 6 and resumed: the
loader needs no saved state beyond its seed and the epoch number.
"""

import queue
import threading

import numpy as np

from .. import random as _random
from .dataset import Dataset


class DataLoader:
    """Iterate over ``dataset`` in batches of (images, labels) NumPy arrays.

    images: float32 (N, C, H, W) -- or (N, 10, C, H, W) when ``transform`` makes
    ten views (TenCrop); labels: int64 (N,).

    batch_size: images per batch. shuffle: a new random order every epoch.
    seed: seeds the shuffle and the augmentation; None draws one from minicnn's
    global generator (so ``mc.manual_seed`` fixes it). drop_last: leave out the
    last batch when it is smaller than batch_size (keeps batch statistics even).
    transform: called as ``transform(image, rng)`` on every image (see transforms).
    prefetch: how many batches a background thread prepares ahead while the
    model trains on the current one (0: prepare each batch when it is asked for).

    Each ``for batch in loader`` is one epoch; the epoch number counts up by one
    per pass, or is set with ``set_epoch`` (fit does that, so resuming works).
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=None, drop_last=False,
                 transform=None, prefetch=2):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DataLoader needs a minicnn.data Dataset, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(prefetch) < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = _random.next_seed() if seed is None else int(seed)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.prefetch = int(prefetch)
        self.epoch = 0

    def __len__(self):
        """The number of batches in one epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """Make the next pass epoch number ``epoch`` (its shuffle and augmentation)."""
        self.epoch = int(epoch)

    def _batches(self, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            images, labels = [], []
            for i in indices:
                image, label = self.dataset[int(i)]
                if self.transform is not None:
                    image = self.transform(image, rng)
                images.append(image)
                labels.append(label)
            shapes = {im.shape for im in images}
            if len(shapes) > 1:
                raise ValueError(f"images in one batch differ in shape {sorted(shapes)}: resize or crop them "
                                 "to one size (e.g. a Resize or CenterCrop transform)")
            yield np.stack(images).astype(np.float32, copy=False), np.asarray(labels, dtype=np.int64)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if self.prefetch == 0:
            yield from self._batches(epoch)
        else:
            yield from self._prefetched(self._batches(epoch))

    def _prefetched(self, batches):
        """Run ``batches`` in a background thread, ``prefetch`` batches ahead.

        Decoding and augmentation are NumPy/Pillow work that mostly releases the
        GIL, so they overlap the model's computation. An error in the thread is
        raised here, in the caller; leaving the loop early stops the thread.
        """
        buffer = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item):
            while not stop.is_set():  # wait for room, but give up if the consumer left
                try:
                    buffer.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def produce():
            try:
                for batch in batches:
                    if not put(batch):
                        return
                put(done)
            except BaseException as e:  # hand any error to the consumer
                put(e)

        worker = threading.Thread(target=produce, name="minicnn-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = buffer.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

"""DataLoader: turns a Dataset into batches, shuffled with a seed, augmented, prefetched.

All the randomness of an epoch comes from its seed and the epoch number: the
shuffle from a generator seeded with (seed, epoch), and each image's augmentation
from one seeded with (seed, epoch, its place in the epoch). So epoch 7 is the same
whether the run went straight through or was stopped after epoch 6 and resumed
(the loader needs no saved state beyond its seed and the epoch number), and an
image is augmented alike however many data-parallel ranks share the epoch.
"""

import queue
import threading

import numpy as np

from .. import random as _random
from .dataset import Dataset
from .transforms import check_transform


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

    num_replicas, rank: data-parallel sharding (the names of PyTorch's
    DistributedSampler; give ``world.size`` and ``world.rank`` of
    mc.distributed.init()). Every rank walks the same epoch order (it depends only
    on seed and epoch); each batch of ``batch_size`` images -- the *global* batch --
    is cut into num_replicas contiguous slices, as even as can be, and this loader
    yields slice ``rank``. So N ranks together see exactly the batches one loader
    sees, and ``first_sample(b)`` says where this rank's slice of batch b starts
    (dropout numbers its elements from there). A rank whose slice of a last, short
    batch is empty yields no last batch (``len`` counts it out).
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=None, drop_last=False,
                 transform=None, prefetch=2, num_replicas=1, rank=0):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DataLoader needs a minicnn.data Dataset, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(prefetch) < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        if int(num_replicas) < 1 or not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got num_replicas={num_replicas}, "
                             f"rank={rank}")
        if int(batch_size) < int(num_replicas):
            raise ValueError(f"batch_size is the global batch, split among the {num_replicas} ranks: it must be at "
                             f"least num_replicas, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = _random.next_seed() if seed is None else int(seed)
        self.drop_last = bool(drop_last)
        self.transform = None if transform is None else check_transform(transform, "DataLoader")
        self.prefetch = int(prefetch)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0

    def _global_batches(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _slice(self, b):
        """(start, stop) in the epoch order of this rank's part of global batch b: the
        first (size mod num_replicas) ranks get one image more, as np.array_split cuts."""
        start = b * self.batch_size
        size = min(self.batch_size, len(self.dataset) - start)
        share, extra = divmod(size, self.num_replicas)
        first = start + self.rank * share + min(self.rank, extra)
        return first, first + share + (1 if self.rank < extra else 0)

    def __len__(self):
        """The number of batches in one epoch (of this rank's, when sharded)."""
        batches = self._global_batches()
        if batches and self._slice(batches - 1)[0] == self._slice(batches - 1)[1]:
            return batches - 1          # this rank's slice of the short last batch is empty
        return batches

    def first_sample(self, b):
        """Where this rank's part of batch b starts in the global batch (0 when not sharded)."""
        return self._slice(b)[0] - b * self.batch_size

    def set_epoch(self, epoch):
        """Make the next pass epoch number ``epoch`` (its shuffle and augmentation)."""
        self.epoch = int(epoch)

    def _batches(self, epoch):
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            start, stop = self._slice(b)
            images, labels = [], []
            for position in range(start, stop):
                image, label = self.dataset[int(order[position])]
                if self.transform is not None:
                    # the image's own draws: the same whichever rank (and how many) prepare it
                    image = self.transform(image, np.random.default_rng([self.seed, epoch, position]))
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


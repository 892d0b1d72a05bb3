"""DataLoader: turns a Dataset into batches, shuffled with a seed, augmented, prefetched.

All the randomness of an epoch comes from its seed and the epoch number: the
shuffle from a generator seeded with (seed, epoch), and each image's augmentation
from one seeded with (seed, epoch, its place in the epoch). So epoch 7 is the same
whether the run went straight through or was stopped after epoch 6 and resumed
(the loader needs no saved state beyond its seed and the epoch number), and an
image is augmented alike however many data-parallel ranks share the epoch, and
however many worker processes prepare it (num_workers, data/workers.py).
"""

import queue
import threading

import numpy as np

from .. import random as _random
from .dataset import Dataset, Subset
from .transforms import check_transform
from .workers import WorkerPool


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
    num_workers: 0 prepares the batches in this process (with the prefetch thread);
    N > 0 decodes and augments them in N worker processes, ``prefetch`` batches ahead
    each (at least one), giving the same batches bit for bit. The workers start at
    the first epoch and stay until ``close()``, the loader's end or interpreter exit
    (data/workers.py). With a start method other than fork (macOS, Windows) the
    dataset and the transform must be picklable.

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
                 transform=None, prefetch=2, num_replicas=1, rank=0, num_workers=0):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DataLoader needs a minicnn.data Dataset, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(prefetch) < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        if not isinstance(num_workers, (int, np.integer)) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
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
        self.num_workers = int(num_workers)
        self._pool = None
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

    def _plan(self, epoch):
        """(epoch positions, dataset indices) of each batch of the epoch, in order."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            start, stop = self._slice(b)
            yield list(range(start, stop)), [int(i) for i in order[start:stop]]

    def _batches(self, epoch):
        for positions, indices in self._plan(epoch):
            yield make_batch(self.dataset, self.transform, self.seed, epoch, positions, indices)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if self.num_workers > 0:
            yield from self._from_workers(epoch)
        elif self.prefetch == 0:
            yield from self._batches(epoch)
        else:
            yield from self._prefetched(self._batches(epoch))

    @property
    def worker_pids(self):
        """The process ids of the workers while they run (empty before the first epoch and after close())."""
        return self._pool.pids if self._pool is not None else []

    def close(self):
        """Stop the worker processes (they start again at the next epoch)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _from_workers(self, epoch):
        """The epoch's batches, prepared by the worker processes, in order."""
        if self._pool is None:
            self._pool = WorkerPool(make_batch, self.dataset, self.transform, self.seed, self.num_workers,
                                    slots=self.num_workers * max(1, self.prefetch))
        pool = self._pool
        generation = pool.new_generation()     # what an abandoned epoch still has in flight is dropped
        plan, total, sent, received = self._plan(epoch), len(self), 0, 0
        try:
            while received < total:
                if generation != pool.generation:
                    raise RuntimeError("this DataLoader started another pass over its data while this one was "
                                       "unfinished; with workers a loader runs one pass at a time")
                if sent < total and pool.free_slots:
                    pool.send(sent, epoch, *next(plan))
                    sent += 1
                elif (generation, received) in pool.ready:
                    yield pool.ready.pop((generation, received))
                    received += 1
                else:
                    pool.receive_one()
        except GeneratorExit:                  # the caller left the loop: the workers stay for the next epoch
            raise
        except BaseException:                  # an error, Ctrl-C: stop the workers, the next epoch starts new ones
            if self._pool is pool:
                self.close()
            raise

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



def make_batch(dataset, transform, seed, epoch, positions, indices):
    """One batch: the images at ``indices`` of ``dataset``, each transformed with the generator seeded
    (seed, epoch, its position in the epoch), stacked as float32 (N, C, H, W), and their labels as int64.
    The same function in the main process and in a worker: the same batch wherever it is made. An error
    while reading or transforming an image says which sample (and file) it was."""
    images, labels = [], []
    for position, index in zip(positions, indices):
        try:
            image, label = dataset[index]
            if transform is not None:
                # the image's own draws: the same whichever rank or worker (and how many) prepare it
                image = transform(image, np.random.default_rng([seed, epoch, position]))
        except Exception as error:
            if hasattr(error, "add_note"):              # Python 3.11+: shown with the traceback
                error.add_note(f"while preparing {_describe(dataset, index)} (position {position} of epoch {epoch})")
            raise
        images.append(image)
        labels.append(label)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in one batch differ in shape {sorted(shapes)}: resize or crop them "
                         "to one size (e.g. a Resize or CenterCrop transform)")
    return np.stack(images).astype(np.float32, copy=False), np.asarray(labels, dtype=np.int64)


def _describe(dataset, index):
    """How error messages name a sample: "sample 17 (file /data/cat/003.jpg)", through Subsets."""
    description = f"sample {index}"
    while isinstance(dataset, Subset):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    files = getattr(dataset, "files", None)
    if files is not None and 0 <= index < len(files):
        description += f" (file {files[index]})"
    return description

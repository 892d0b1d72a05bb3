"""Worker processes that prepare a DataLoader's batches: decoding and augmentation on several cores.

    loader = DataLoader(folder, batch_size=128, shuffle=True, transform=augment, num_workers=2)

The main process decides everything that is random about an epoch (the order; each image's
augmentation generator is seeded with (seed, epoch, its place in the epoch)) and sends each
worker the list of samples of one batch at a time, round robin. A worker prepares the batch
with the very function the main process uses without workers (loader.make_batch), so the
batches are the same bit for bit whatever the number of workers, and arrive in order.

How a batch comes back: through one of a few shared-memory buffers ("slots") that the main
process owns. A task carries the slot it may write into; the worker writes the images there
and sends only the labels and the shape through the result queue; the main process copies
the images out (the caller may keep a batch) and the slot is free for the next task. The first
batch in a slot, or one larger than it, comes through the queue itself, and the main process
then makes the slot large enough.

Lifetime: the workers start at the first epoch and stay for the next ones (a loader's workers
are started once). ``DataLoader.close()``, the loader being garbage collected, and interpreter
exit stop them: each gets a "stop" message, and one that does not stop within a few seconds is
terminated. Workers ignore Ctrl-C (the terminal sends SIGINT to every process of the job): the
main process gets the KeyboardInterrupt and stops them. A worker whose main process died
(kill -9) notices within a second and exits. An exception in a worker is raised in the main
process, of the same type where possible, naming the sample (and its file) and the worker.
"""

import multiprocessing
import os
import queue
import signal
import traceback
import weakref
from multiprocessing import resource_tracker, shared_memory

import numpy as np

STOP_WAIT_SECONDS = 5.0      # how long close() waits for a worker to stop before terminating it
POLL_SECONDS = 1.0           # how often a waiting process checks that the other side is still alive


# --------------------------------------------------------------------------- in the worker process
def _attach(name):
    """Attach to the main process's shared memory ``name`` without owning it. (Before Python 3.13
    attaching registers the name with the resource tracker, which the workers share with the main
    process: it already holds the name, in a set, so nothing changes and the main process's unlink
    stays the only one.)"""
    try:
        return shared_memory.SharedMemory(name=name, track=False)        # Python 3.13+
    except TypeError:
        return shared_memory.SharedMemory(name=name)


def _portable(error):
    """``error`` if it survives pickling (to cross the result queue), else None."""
    import pickle
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return None


def worker_loop(worker_id, make_batch, dataset, transform, seed, tasks, results, parent_pid):
    """A worker's life: prepare the batches it is sent until it gets None (or its parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # Ctrl-C is the main process's to handle
    attached = {}                                       # slot -> (name, SharedMemory)
    try:
        while True:
            try:
                task = tasks.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if os.getppid() != parent_pid:          # the main process died (kill -9): leave
                    return
                continue
            if task is None:
                return
            generation, b, epoch, positions, indices, slot, slot_name, slot_size = task
            try:
                images, labels = make_batch(dataset, transform, seed, epoch, positions, indices)
            except BaseException as error:              # sent to the main process, which raises it
                results.put(("error", generation, b, slot, worker_id,
                             (type(error).__name__, str(error), list(getattr(error, "__notes__", [])),
                              traceback.format_exc(), _portable(error))))
                continue
            if slot_name is not None and images.nbytes <= slot_size:
                if slot not in attached or attached[slot][0] != slot_name:
                    if slot in attached:
                        attached[slot][1].close()
                    attached[slot] = (slot_name, _attach(slot_name))
                view = np.ndarray(images.shape, images.dtype, buffer=attached[slot][1].buf)
                view[...] = images
                del view                                 # no export of the buffer outlives this
                results.put(("shared", generation, b, slot, worker_id, (images.shape, labels)))
            else:
                results.put(("inline", generation, b, slot, worker_id, (images, labels)))
    finally:
        for _, memory in attached.values():
            memory.close()


# --------------------------------------------------------------------------- in the main process
class WorkerError(RuntimeError):
    """A worker failed with an exception that cannot be raised again as its own type."""


class WorkerPool:
    """``num_workers`` processes preparing batches, with ``slots`` batches in flight at most.

    The DataLoader drives it: ``new_generation()`` starts an epoch (results still arriving
    for an abandoned one are dropped as they come), ``send`` hands out a batch while
    ``free_slots`` is not empty, ``ready`` holds the batches received, by (generation, b),
    and ``receive_one`` waits for the next result.
    """

    def __init__(self, make_batch, dataset, transform, seed, num_workers, slots):
        context = multiprocessing.get_context()
        # one tracker for this process and its workers: started before they are, so they share it
        resource_tracker.ensure_running()
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(num_workers)]
        self.workers = [context.Process(target=worker_loop, name=f"minicnn-loader-worker-{i}", daemon=True,
                                        args=(i, make_batch, dataset, transform, seed, self.tasks[i],
                                              self.results, os.getpid()))
                        for i in range(num_workers)]
        self.buffers = [None] * slots                   # slot -> SharedMemory, made when a batch shows its size
        self.free_slots = list(range(slots))
        self.generation = 0
        self.ready = {}
        self._stop = weakref.finalize(self, _stop_workers, self.workers, self.tasks, self.results, self.buffers)
        for worker in self.workers:
            worker.start()

    @property
    def pids(self):
        return [w.pid for w in self.workers]

    def new_generation(self):
        self.generation += 1
        self.ready.clear()
        return self.generation

    def send(self, b, epoch, positions, indices):
        slot = self.free_slots.pop()
        memory = self.buffers[slot]
        name, size = (memory.name, memory.size) if memory is not None else (None, 0)
        self.tasks[b % len(self.workers)].put((self.generation, b, epoch, positions, indices, slot, name, size))

    def receive_one(self):
        """Wait for one result and take it in: a batch of this generation goes to ``ready``, an
        older one is dropped, an error is raised here. Frees the result's slot."""
        message = self._next_message()
        kind, generation, b, slot, worker_id, payload = message
        try:
            if kind == "error":
                if generation != self.generation:        # from an epoch the caller has left: not theirs
                    return
                raise _rebuilt(payload, worker_id, self.workers[worker_id].pid)
            if kind == "shared":
                shape, labels = payload
                images = np.ndarray(shape, np.float32, buffer=self.buffers[slot].buf).copy()
            else:
                images, labels = payload
                self._grow(slot, images.nbytes)
            if generation == self.generation:
                self.ready[(generation, b)] = (images, labels)
        finally:
            self.free_slots.append(slot)

    def _next_message(self):
        while True:
            try:
                return self.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [(i, w) for i, w in enumerate(self.workers) if not w.is_alive()]
                if dead:
                    i, worker = dead[0]
                    raise RuntimeError(f"DataLoader worker {i} (pid {worker.pid}) exited unexpectedly with exit "
                                       f"code {worker.exitcode} (killed, or out of memory?)")

    def _grow(self, slot, nbytes):
        """Make slot's shared memory hold at least ``nbytes`` (the next batch in it goes there)."""
        memory = self.buffers[slot]
        if memory is not None and memory.size >= nbytes:
            return
        if memory is not None:
            memory.close()
            memory.unlink()
        self.buffers[slot] = shared_memory.SharedMemory(create=True, size=max(nbytes, 1))

    def close(self):
        self._stop()


def _rebuilt(payload, worker_id, pid):
    """The worker's exception, raised again here with where it happened (same type where it can be)."""
    type_name, message, notes, worker_traceback, original = payload
    where = "".join(f"{note}\n" for note in notes)
    text = f"{message}\n{where}in DataLoader worker {worker_id} (pid {pid}); the worker's traceback:\n{worker_traceback}"
    if original is not None:
        try:
            return type(original)(text)
        except Exception:
            pass
    return WorkerError(f"{type_name}: {text}")


def _stop_workers(workers, tasks, results, buffers):
    """Stop every worker (a polite None, then terminate), close the queues, free the shared memory."""
    for worker, task_queue in zip(workers, tasks):
        if worker.is_alive():
            try:
                task_queue.put(None)
            except (OSError, ValueError):
                pass
    for worker in workers:
        worker.join(STOP_WAIT_SECONDS)
        if worker.is_alive():
            worker.terminate()
            worker.join(STOP_WAIT_SECONDS)
    for q in tasks + [results]:
        q.cancel_join_thread()          # never block on data nobody will read
        q.close()
    for slot, memory in enumerate(buffers):
        if memory is not None:
            memory.close()
            memory.unlink()
            buffers[slot] = None

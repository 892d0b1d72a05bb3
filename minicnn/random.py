"""minicnn's random state: one NumPy generator for initialisation and dropout seeds.

Dropout masks are a hash of (seed, element index); each dropout call draws its
seed from this generator. So after ``mc.manual_seed(s)`` the CPU and the GPU
draw the same masks, and a whole training step can be compared across devices.

The element index is the element's place in the *global* batch: in data-parallel
training (minicnn/distributed/) a rank holds a slice of it, starting at sample
``first_sample``, and numbers its elements from first_sample * (elements per
sample). So two ranks draw, between them, exactly the mask one process draws.
"""

import contextlib

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the generator used for weight initialisation and dropout seeds."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator():
    return _generator


def next_seed():
    """A fresh 32-bit seed for one dropout mask."""
    return int(_generator.integers(0, 2**32, dtype=np.uint64))


def get_state():
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state


# --------------------------------------------------------------------------- the sample offset
_first_sample = 0


@contextlib.contextmanager
def first_sample(index):
    """Inside the block, dropout numbers the batch it sees as samples index, index + 1, ...
    of the global batch (fit sets it from a sharded DataLoader; 0 outside)."""
    global _first_sample
    index = int(index)
    if index < 0:
        raise ValueError(f"first_sample must be >= 0, got {index}")
    before, _first_sample = _first_sample, index
    try:
        yield
    finally:
        _first_sample = before


def dropout_offset(shape):
    """The global index of the first element of a batch of ``shape`` (N, ...): the
    first sample's index times the elements per sample."""
    if len(shape) == 0 or _first_sample == 0:
        return 0
    return _first_sample * int(np.prod(shape[1:]))


# --------------------------------------------------------------------------- dropout masks
# The same hash as mc_dropout_hash in csrc/common.cuh, in NumPy, so that the NumPy
# reference, the host build and the GPU draw the very same mask.
def _fmix32(h):
    """MurmurHash3's 32-bit finalizer, on uint32 arrays (NumPy wraps mod 2^32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    h = h ^ (h >> np.uint32(16))
    return h


def dropout_hash(seed, count, offset=0):
    """hash(i) = fmix32(seed ^ fmix32(lo(i) + 0x9E3779B9 * (hi(i) + 1))) for i = offset .. offset+count-1."""
    index = np.arange(count, dtype=np.uint64) + np.uint64(offset)
    lo = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hi = (index >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        return _fmix32(np.uint32(seed) ^ _fmix32(lo + np.uint32(0x9E3779B9) * (hi + np.uint32(1))))


def dropout_threshold_and_scale(p, dtype):
    """An element is kept when (hash >> 8) >= threshold, i.e. with probability 1 - p
    (24-bit resolution); kept elements are multiplied by 1 / (1 - p)."""
    threshold = min(int(round(p * (1 << 24))), 1 << 24)
    scale = dtype.type(0.0) if p >= 1.0 else dtype.type(1.0 / (1.0 - p))
    return threshold, scale


def dropout_mask(shape, threshold, seed, offset):
    """True where dropout keeps the element: (hash(seed, offset + flat index) >> 8) >= threshold."""
    keep = (dropout_hash(seed, int(np.prod(shape)), offset) >> np.uint32(8)) >= np.uint32(threshold)
    return keep.reshape(shape)

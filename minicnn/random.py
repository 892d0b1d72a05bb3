"""minicnn's random state: one NumPy generator for initialisation and dropout seeds.

Dropout masks are a hash of (seed, element index); each dropout call draws its
seed from this generator. So after ``mc.manual_seed(s)`` the CPU and the GPU
draw the same masks, and a whole training step can be compared across devices.
"""

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

"""Shared pytest setup: tests marked ``gpu`` are collected everywhere and skipped,
with the reason "no CUDA device", where CuPy sees no GPU.

MINICNN_CUPY_NO_POOL=1 turns CuPy's memory pool off (one cudaMalloc per array), so
that compute-sanitizer's memcheck sees every array's bounds (scripts/gpu_check.sh).
"""

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with reason 'no CUDA device' elsewhere)")
    if os.environ.get("MINICNN_CUPY_NO_POOL") == "1":
        try:
            import cupy
            cupy.cuda.set_allocator(None)
        except ImportError:
            pass


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from minicnn.device import cuda_available
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in gpu_items:
        item.add_marker(skip)

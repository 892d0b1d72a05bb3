"""Shared pytest setup: tests marked ``gpu`` are collected everywhere and skipped,
with the reason "no CUDA device", where CuPy sees no GPU."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with reason 'no CUDA device' elsewhere)")


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

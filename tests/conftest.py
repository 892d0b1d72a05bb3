"""Shared pytest setup.

- The ``backend`` fixture runs a test once per backend (tests/fixtures.py lists them:
  the NumPy reference, the host-compiled kernels, both CUDA loaders on fakes, both on a
  GPU); ``kernel_backend`` is the same without the reference, for cases that compare a
  backend with the ReferenceBackend; ``gpu_backend`` the two CUDA backends only.
- Tests marked ``gpu`` are collected everywhere and skipped, with the reason
  "no CUDA device", where CuPy sees no GPU.
- Tests marked ``figures`` run the documented commands whose results the docs quote
  (tests/test_figures.py; minutes of training). They run by default, so CI holds every
  quoted figure to its command; --skip-figures skips them (saying so) for a quick local run.
- Hypothesis profiles: "minicnn" (the default: few examples per backend, so the suite
  stays fast on two cores), "quick" (for slow runs such as compute-sanitizer) and
  "thorough"; pick one with --hypothesis-profile=NAME.

MINICNN_CUPY_NO_POOL=1 turns CuPy's memory pool off (one cudaMalloc per array), so
that compute-sanitizer's memcheck sees every array's bounds (minicnn/device.py;
scripts/gpu_round.sh's memcheck steps): applied here before any test makes an array.

After every test the CPU backend and the kernels' thread count are put back to what
they were when the session started, so a test that switches them cannot change
what the tests after it run on.
"""

import pytest
from hypothesis import HealthCheck, settings

import fixtures

# The backend fixture is set up once per test and holds for all of its examples, which
# is what every example should see: hypothesis's warning about that is switched off.
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("minicnn", max_examples=15, deadline=None, suppress_health_check=_quiet)
settings.register_profile("quick", max_examples=3, deadline=None, suppress_health_check=_quiet)
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=_quiet)
settings.load_profile("minicnn")


@pytest.fixture(params=fixtures.BACKENDS)
def backend(request, monkeypatch):
    """Each backend in turn (a fixtures.BackendUnderTest): minicnn's ops run on it."""
    with fixtures.backend_selected(request.param, monkeypatch) as selected:
        yield selected


@pytest.fixture(params=fixtures.KERNEL_BACKENDS)
def kernel_backend(request, monkeypatch):
    """Each backend but the reference, in turn: the ones checked against the ReferenceBackend."""
    with fixtures.backend_selected(request.param, monkeypatch) as selected:
        yield selected


@pytest.fixture(params=fixtures.GPU_BACKENDS)
def gpu_backend(request, monkeypatch):
    """cuda-rawkernel, then cuda-pybind11 (marked gpu)."""
    with fixtures.backend_selected(request.param, monkeypatch) as selected:
        yield selected


def pytest_addoption(parser):
    parser.addoption("--skip-figures", action="store_true",
                     help="skip the documented commands whose results the docs quote (minutes; tests/test_figures.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with reason 'no CUDA device' elsewhere)")
    config.addinivalue_line("markers", "figures: runs documented commands for minutes (skipped with --skip-figures)")
    from minicnn.device import apply_cupy_pool_setting
    apply_cupy_pool_setting()


_session_cpu_settings = {}


def pytest_sessionstart(session):
    from minicnn import backends
    _session_cpu_settings.update(backend=backends.get_cpu_backend(), threads=backends.get_num_threads())


def pytest_runtest_teardown(item):
    from minicnn import backends
    from minicnn.backends import host
    if not _session_cpu_settings:
        return
    backends.set_cpu_backend(_session_cpu_settings["backend"])
    if host.available() and backends.get_num_threads() != _session_cpu_settings["threads"]:
        backends.set_num_threads(_session_cpu_settings["threads"])


def pytest_collection_modifyitems(config, items):
    if config.getoption("--skip-figures"):
        skip = pytest.mark.skip(reason="--skip-figures: the documented commands were not run")
        for item in items:
            if "figures" in item.keywords:
                item.add_marker(skip)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from minicnn.device import cuda_available
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in gpu_items:
        item.add_marker(skip)

import os

import pytest
import torch

# Without CUDA the Triton kernels (tests/kernels) run under Triton's interpreter; it must be set
# before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Tests use tiny tensors: one intra-op thread is faster and avoids oversubscribing small CI boxes.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# cuBLAS reads its workspace setting when a process first uses it, and many tests use CUDA before
# one trains with TrainConfig(deterministic=True) (which sets it too late to count): set it for
# the whole session so that deterministic=True replays bit for bit on CUDA in every test process
# (and in the subprocesses the tests start, which inherit it). No effect on the CPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default="auto", choices=("auto", "cpu", "cuda"),
                     help="device of the tests that train or encode: auto = cuda when available (CI: cpu)")


def _session_device(config) -> torch.device:
    name = config.getoption("--device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda, but torch.cuda.is_available() is False")
    return torch.device(name)


def pytest_report_header(config):
    return f"probsae test device: {_session_device(config)} (--device {config.getoption('--device')})"


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device tests train and encode on (``--device``; CPU in CI)."""
    return _session_device(pytestconfig)


@pytest.fixture(autouse=True)
def _auto_means_test_device(request, monkeypatch):
    """``device="auto"`` in library calls means the test device: with ``--device cpu`` on a GPU
    machine, probsae sees no CUDA device (its one check, ``probsae.devices.cuda_count``)."""
    if _session_device(request.config).type == "cpu":
        import probsae.devices

        monkeypatch.setattr(probsae.devices, "cuda_count", lambda: 0)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def cuda_device(device) -> torch.device:
    """The test device when it is CUDA; skips the test otherwise."""
    if device.type != "cuda":
        pytest.skip("runs on CUDA only (pytest --device cuda on a GPU machine)")
    return device


@pytest.fixture
def sigint_default():
    """Ctrl-C raises KeyboardInterrupt during the test, whatever this process inherited: a shell
    starts background jobs with SIGINT ignored, and Python then keeps it ignored."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)

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
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)

"""Shared fixtures for the data-pipeline tests: tiny random models (built once per session)."""

from __future__ import annotations

import pytest

from probsae.data.models import ModelHandle
from probsae.data.tiny import tiny_model


@pytest.fixture(scope="session")
def tiny_gpt2() -> ModelHandle:
    return tiny_model("gpt2")


@pytest.fixture(scope="session")
def tiny_qwen3() -> ModelHandle:
    return tiny_model("qwen3")


@pytest.fixture(scope="session")
def tiny_bert() -> ModelHandle:
    return tiny_model("bert")


@pytest.fixture(params=["gpt2", "qwen3", "bert"])
def tiny_any(request: pytest.FixtureRequest, tiny_gpt2: ModelHandle, tiny_qwen3: ModelHandle,
             tiny_bert: ModelHandle) -> ModelHandle:
    return {"gpt2": tiny_gpt2, "qwen3": tiny_qwen3, "bert": tiny_bert}[request.param]


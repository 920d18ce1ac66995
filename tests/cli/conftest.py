"""Shared assets of the CLI tests: a tiny random-weight GPT-2 saved to disk and a corpus for it."""

import pytest

from probsae.data.tiny import save_tiny_model, tiny_documents


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    save_tiny_model(root / "model", "gpt2", n_layers=3, d_model=32, max_positions=64)
    (root / "corpus.txt").write_text("\n\n".join(tiny_documents(200)))
    return root

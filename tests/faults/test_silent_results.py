"""Issue 14, silent wrong results: stale caches, flipped bytes, NaN weights, divergence, resumed
averages. Each must be an error (exit 2) or give the right answer, never a quietly wrong one."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from probsae.cli.main import main
from probsae.training.member import Member


def flip(path, offset_from_end=40, mask=0x10):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= mask
    path.write_bytes(bytes(data))


def flip_inside(path, tensor, n_bytes):
    """Invert ``n_bytes`` bytes in the middle of ``tensor``'s data (found from the header)."""
    from probsae.tensorfile import read_header

    h = read_header(path)
    e = h.entries[tensor]
    start = h.data_start + (e.begin + e.end - n_bytes) // 2
    assert e.end - e.begin >= n_bytes
    data = bytearray(path.read_bytes())
    data[start:start + n_bytes] = bytes(b ^ 0xFF for b in data[start:start + n_bytes])
    path.write_bytes(bytes(data))


def test_similar_corpus_names_and_split_settings_get_their_own_caches(assets, tmp_path, capsys):
    """`--corpus a/b.txt` then `--corpus a_b.txt` (other text) reused the first cache, and
    `--holdout-every 2` reused a split made with 20; options that cannot change the activations
    (device, extraction batch size, shard size) still share one."""
    (tmp_path / "a").mkdir()
    text = (assets / "corpus.txt").read_text()
    (tmp_path / "a" / "b.txt").write_text(text)
    (tmp_path / "a_b.txt").write_text(text.replace("the", "a"))  # same sanitised name, different text
    cache = tmp_path / "cache"
    # --model-dtype float32: the model dtype is part of the key (a bf16 extraction is another cache),
    # and 'auto' means bfloat16 on a GPU but float32 on the CPU, so with 'auto' the --device cpu run
    # below would rightly get a cache of its own on a GPU machine; a pinned dtype lets only the
    # device vary, which must not split the cache
    base = ["cache", "--model", str(assets / "model"), "--hook", "resid_pre.1", "--context-length", "16",
            "--max-tokens", "200", "--split", "train", "--model-dtype", "float32", "--cache-dir", str(cache),
            "--corpus"]
    paths = []
    for extra in ([str(tmp_path / "a" / "b.txt")], [str(tmp_path / "a_b.txt")],
                  [str(tmp_path / "a_b.txt"), "--holdout-every", "2"],
                  [str(tmp_path / "a_b.txt"), "--holdout-every", "2", "--extract-batch-size", "3",
                   "--shard-tokens", "4096", "--device", "cpu"]):
        capsys.readouterr()
        assert main([*base, *extra]) == 0
        paths.append(capsys.readouterr().out.split()[-1])
    assert len(set(paths[:3])) == 3 and paths[3] == paths[2]
    (tmp_path / "a_b.txt").write_text(text.replace("the", "one"))  # edited in place: a new cache
    assert main([*base, str(tmp_path / "a_b.txt")]) == 0
    assert capsys.readouterr().out.split()[-1] != paths[1]


def test_a_reused_cache_must_record_the_same_data(cache_copy, tmp_path, train_args, fails_cleanly):
    cache = cache_copy
    for man in cache.glob("*-train-*/manifest.json"):
        m = json.loads(man.read_text())
        m["meta"]["holdout_every"] = 2
        man.write_text(json.dumps(m))
    fails_cleanly(train_args(tmp_path / "run", cache=cache), "was built for different data", "holdout_every")


def test_a_flipped_byte_in_a_cache_shard_stops_training(cache_copy, tmp_path, train_args, fails_cleanly):
    cache = cache_copy
    for shard in cache.glob("*-train-*/shard_*.safetensors"):
        flip_inside(shard, "activations", 4096)  # 4 KiB, as in the issue
    fails_cleanly(train_args(tmp_path / "run", cache=cache), "shard_00000.safetensors is corrupt: its CRC-32")


def test_flipped_bytes_in_a_checkpoint_stop_the_resume(run_copy, train_args, fails_cleanly):
    flip_inside(run_copy / "checkpoint.safetensors", "sae/W_dec", 64)  # 64 bytes of W_dec, as in the issue
    fails_cleanly(train_args(run_copy), "checkpoint.safetensors is corrupt")


def test_a_flipped_byte_in_the_weights_stops_eval(run_copy, fails_cleanly):
    flip(run_copy / "sae.safetensors", 100)
    fails_cleanly(["eval", str(run_copy), "--no-downstream"], "sae.safetensors is corrupt")


def test_an_edited_config_is_noticed(run_copy, fails_cleanly):
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["config"]["k"] = 3
    (run_copy / "config.json").write_text(json.dumps(cfg))
    fails_cleanly(["eval", str(run_copy), "--no-downstream"], "config.json differs from the config")


def test_nan_weights_are_refused(run_copy, fails_cleanly):
    from probsae.saes.base import WEIGHTS_CHECKSUM_KEY
    from probsae.tensorfile import CHECKSUM_KEY, load_tensors, save_tensors

    # sae.save refuses NaN weights (tests/faults/test_formats_import.py), so damage the file itself
    w = run_copy / "sae.safetensors"
    state, meta = load_tensors(w)
    state["W_dec"] = state["W_dec"].clone()
    state["W_dec"][0, 0] = float("nan")
    crc = save_tensors(w, state, {k: v for k, v in meta.items() if k != CHECKSUM_KEY})
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg[WEIGHTS_CHECKSUM_KEY] = crc
    (run_copy / "config.json").write_text(json.dumps(cfg, indent=2))
    fails_cleanly(["eval", str(run_copy), "--no-downstream"], "'W_dec'", "NaN/inf")


@pytest.mark.parametrize("damage, needle", [
    ("nan", "NaN/inf"), ("int32", "dtype torch.int32, expected floating point"), ("extra", "'surprise'"),
])
def test_import_refuses_bad_weights(reference, tmp_path, fails_cleanly, damage, needle):
    exp = tmp_path / "exp"
    assert main(["export", str(reference), "--format", "saelens", "--out", str(exp)]) == 0
    w = load_file(str(exp / "sae_weights.safetensors"))
    if damage == "nan":
        w["W_dec"][0, 0] = float("nan")
    elif damage == "int32":
        w["W_enc"] = w["W_enc"].to(torch.int32)
    else:
        w["surprise"] = torch.zeros(3)
    save_file(w, str(exp / "sae_weights.safetensors"))
    fails_cleanly(["import", str(exp), "--format", "saelens", "--out", str(tmp_path / "imp")], needle)
    assert not (tmp_path / "imp").exists()


def test_a_diverging_run_stops_with_exit_2_and_strict_json(tmp_path, train_args, fails_cleanly):
    run = tmp_path / "run"
    fails_cleanly(train_args(run, "--lr", "1e6"), "training diverged", "lr=1e+06")
    assert not (run / "metrics.json").exists() and not (run / "sae.safetensors").exists()
    for line in (run / "log.jsonl").read_text().splitlines():
        assert "NaN" not in line and "Infinity" not in line


@pytest.mark.parametrize("option, value, needle", [
    ("--lr", "inf", "lr must be a finite number > 0"), ("--steps", "0", "steps must be a positive integer"),
    ("--grad-clip", "-1", "grad_clip must be ≥ 0"), ("--checkpoint-every", "-1", "checkpoint_every must be"),
    ("--adam-betas", "1.5,0.9", "adam_betas must be two numbers in [0, 1)"),
    ("--device", "tpu", "unknown device 'tpu'"), ("--holdout-every", "1", "holdout_every must be"),
    ("--stream-buffer", "0", "stream_buffer must be"), ("--model-dtype", "float8", "model_dtype must be"),
])
def test_nonsense_options_fail_before_extraction(tmp_path, train_args, fails_cleanly, monkeypatch, option, value, needle):
    monkeypatch.setattr("probsae.data.models.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    cache = tmp_path / "cache"
    fails_cleanly(train_args(tmp_path / "run", option, value, cache=cache), needle)
    assert not cache.exists() and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch sees a GPU")
def test_cuda_without_a_gpu_fails_before_extraction(tmp_path, train_args, fails_cleanly):
    fails_cleanly(train_args(tmp_path / "run", "--device", "cuda"), "no CUDA GPU is usable")


def test_final_logged_loss_does_not_depend_on_a_resume(reference, tmp_path, train_args, monkeypatch):
    original = Member.step

    def dying(self, batch, step, total):
        if step == 6:  # after the step-4 checkpoint, inside the log window 3..6
            raise KeyboardInterrupt
        return original(self, batch, step, total)

    monkeypatch.setattr(Member, "step", dying)
    run = tmp_path / "run"
    assert main(train_args(run)) == 130
    monkeypatch.setattr(Member, "step", original)
    assert main(train_args(run)) == 0
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    for m in (a, b):
        m["train_final"].pop("elapsed_s")  # wall-clock time of the run
    assert b["train_final"] == a["train_final"] and b["heldout"] == a["heldout"]

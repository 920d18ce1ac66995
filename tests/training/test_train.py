"""The training loop: learning, several SAEs on one stream, logs, resume after a kill."""

import json

import pytest
import torch

import probsae
from probsae.errors import ConfigError, InputError
from probsae.training.member import Member


def data(n=2048, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 2.0


def cfg(**kw):
    base = dict(steps=30, batch_size=64, lr=3e-3, warmup_steps=5, progress=False, log_every=10)
    base.update(kw)
    return probsae.TrainConfig(**base)


def test_loss_decreases_and_history_is_logged(tmp_path, device):
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    hist = probsae.train(sae, data(), cfg(steps=60, log_path=str(tmp_path / "log.jsonl"), device=str(device)))
    losses = hist.column("loss")
    assert len(losses) == 6 and losses[-1] < losses[0]
    lines = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["architecture"] == "topk"
    steps = [l for l in lines if "step" in l]
    assert [l["step"] for l in steps] == [10, 20, 30, 40, 50, 60]
    assert steps[-1]["tokens"] == 60 * 64
    for key in ("loss", "mse", "explained_variance", "l0", "alive", "dead", "lr"):
        assert key in steps[-1]
    assert steps[-1]["l0"] == pytest.approx(4.0)
    assert hist.final["step"] == 60


def test_prob_topk_logs_annealed_temperature(device):
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=64, k=4)
    hist = probsae.train(sae, data(), cfg(steps=40, warmup_steps=10, device=str(device)))
    betas = hist.column("beta")
    assert betas[0] == pytest.approx(5.0 * (1e-4 / 5.0) ** ((9 - 10 + 1) / 29))  # step index 9 is the last warm-up step
    assert betas[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(betas, betas[1:]))


def test_several_saes_step_on_the_same_batches(device):
    # deterministic=True: on CUDA the decoder's backward accumulates with atomics, so without it
    # two identical SAEs may round differently; with it (and always on the CPU) they are bit-equal.
    c = cfg(device=str(device), deterministic=True)
    a = probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=1)
    b = probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=1)
    r = probsae.build_sae("relu", d_in=16, d_sae=64)
    histories = probsae.train([a, b, r], data(), c)
    assert len(histories) == 3
    assert torch.equal(a.W_dec, b.W_dec), "identical SAEs on identical batches must stay identical"
    single = probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=1)
    probsae.train(single, data(), c)
    assert torch.equal(single.W_dec, a.W_dec), "training alongside others must not change a member"


def test_train_moves_the_sae_to_the_training_device_in_place(device):
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    before = sae.W_dec.detach().clone()
    x = data().to(device)  # data on the training device or not: both work
    probsae.train(sae, x, cfg(steps=5, device=str(device)))
    assert {p.device.type for p in sae.parameters()} == {device.type}
    assert not torch.equal(sae.W_dec.detach().cpu(), before), "the object passed in is the one trained"
    again = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    probsae.train(again, data(), cfg(steps=5, device="cpu"))
    assert again.W_dec.device.type == "cpu"


def test_deterministic_mode_is_restored_after_training(device, monkeypatch):
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    assert not torch.are_deterministic_algorithms_enabled()
    seen = []
    original = Member.step

    def spy(self, batch, step, total):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return original(self, batch, step, total)

    monkeypatch.setattr(Member, "step", spy)
    probsae.train(sae, data(), cfg(steps=3, device=str(device), deterministic=True))
    assert seen == [True, True, True]
    assert not torch.are_deterministic_algorithms_enabled(), "train() restores the global setting"


def test_lr_schedule_warmup_then_cosine():
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    hist = probsae.train(sae, data(), cfg(steps=40, warmup_steps=10, log_every=1, lr=1e-2))
    lrs = hist.column("lr")
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) or lrs[-1] < 1e-4
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize("arch", ["topk", "prob_topk"])
def test_killed_run_resumes_to_the_same_result(arch, tmp_path, monkeypatch, device):
    def build():
        return probsae.build_sae(arch, d_in=16, d_sae=64, k=4, seed=5)

    # deterministic: a resumed run replays the uninterrupted one bit for bit, CUDA included
    # (the checkpoint restores the CPU and CUDA RNG states that drive prob_topk's gate noise)
    c = cfg(steps=30, checkpoint_every=10, device=str(device), deterministic=True)
    reference = build()
    probsae.train(reference, data(), c)

    original_step = Member.step

    def dying_step(self, batch, step, total):
        if step == 25:
            raise KeyboardInterrupt("killed")
        return original_step(self, batch, step, total)

    monkeypatch.setattr(Member, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        probsae.train(build(), data(), c, run_dirs=[tmp_path / "run"])
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    monkeypatch.setattr(Member, "step", original_step)

    resumed = build()
    hist = probsae.train(resumed, data(), c, run_dirs=[tmp_path / "run"])
    assert torch.equal(resumed.W_dec, reference.W_dec)
    assert torch.equal(resumed.W_enc, reference.W_enc)
    assert [r["step"] for r in hist.steps] == [10, 20, 30], "log keeps each step once across the resume"
    loaded = probsae.load_sae(tmp_path / "run")  # load_sae puts it on the CPU
    assert torch.equal(loaded.W_dec, resumed.W_dec.cpu())


def test_liveness_counts_dead_latents():
    from probsae.training.liveness import Liveness

    live = Liveness(4, window=10)
    live.update(torch.tensor([True, False, False, False]), 6)
    assert live.alive() == 1
    live.update(torch.tensor([False, True, False, False]), 6)
    assert live.alive_mask().tolist() == [True, True, False, False]  # latent 0 last fired 6 tokens ago
    assert live.dead_mask().tolist() == [False, False, True, True]  # 2, 3 silent for all 12 tokens
    live.update(torch.tensor([False, True, False, False]), 6)
    assert live.alive_mask().tolist() == [False, True, False, False]  # latent 0 silent for 12 ≥ 10 tokens


def test_training_data_errors():
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    with pytest.raises(InputError, match="d_in=16"):
        probsae.train(sae, torch.randn(256, 8), cfg())
    with pytest.raises(InputError, match="fewer than batch_size"):
        probsae.train(sae, torch.randn(10, 16), cfg())
    with pytest.raises(ConfigError, match="steps must be set"):
        probsae.train(sae, (b for b in [torch.randn(8, 16)]), cfg(steps=None))
    with pytest.raises(InputError, match="no batches"):
        probsae.train(sae, [], cfg())
    bad = torch.randn(256, 16)
    bad[100, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):  # CPU: before the step; CUDA: at the log record (below)
        probsae.train(sae, bad, cfg(batch_size=256, steps=2))


@pytest.mark.parametrize("checkpoint_every, end", [(0, 3), (1, 1)])  # found at the last log record / the checkpoint
def test_nan_batches_checked_on_the_device_are_an_input_error(monkeypatch, tmp_path, checkpoint_every, end):
    """On CUDA (check_finite='auto') a training batch is not checked before its step (a host sync
    per step): each step ands the batch's finiteness into a device flag, read once the loss is found
    non-finite, so bad data is named as such (InputError), not as a divergence (a lower learning
    rate would not help), and nothing is saved. Emulated on the CPU: the device flag on, the SAE's
    own per-batch check off."""
    import probsae.training.member as member

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert member.device_checks_batches(cfg(), cuda) and not member.device_checks_batches(cfg(), cpu)
    assert not member.device_checks_batches(cfg(check_finite="always"), cuda)  # checked before each step
    assert not member.device_checks_batches(cfg(check_finite="never"), cuda)
    monkeypatch.setattr(member, "device_checks_batches", lambda cfg, device: True)
    bad = torch.randn(256, 16)
    bad[100, 0] = float("nan")
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    c = cfg(batch_size=256, steps=3, log_every=5, checkpoint_every=checkpoint_every, check_finite="never")
    with pytest.raises(InputError, match=f"training activations contain NaN/inf values: a batch between steps 0 and {end}"):
        probsae.train(sae, bad, c, run_dirs=[tmp_path / "run"])
    assert not (tmp_path / "run" / "sae.safetensors").exists()
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    with pytest.raises(member.TrainingDivergedError, match="the loss became NaN/inf"):  # clean data: a divergence
        probsae.train(probsae.build_sae("topk", d_in=16, d_sae=64, k=4), data(), cfg(lr=1e30, warmup_steps=0))


def test_iterable_of_batches_is_used_as_given():
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    batches = [torch.randn(32, 16) for _ in range(5)]
    hist = probsae.train(sae, iter(batches), cfg(steps=5, log_every=1))
    assert [r["tokens"] for r in hist.steps] == [32, 64, 96, 128, 160]


def test_fresh_start_replaces_a_stale_log(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 999, "loss": 1.0}\n')  # killed before its first checkpoint
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    hist = probsae.train(sae, data(), cfg(steps=20), run_dirs=[run])
    assert [r["step"] for r in hist.steps] == [10, 20]
    assert "999" not in (run / "log.jsonl").read_text()


def test_cache_batches_are_full():
    class Cache:
        n_tokens = 100

        def iter_batches(self, batch_size, shuffle=True, seed=0, drop_last=False):
            x = torch.randn(self.n_tokens, 16)
            for i in range(0, self.n_tokens, batch_size):
                if drop_last and i + batch_size > self.n_tokens:
                    return
                yield x[i : i + batch_size]

    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    hist = probsae.train(sae, Cache(), cfg(steps=6, batch_size=32, log_every=1))
    assert [r["tokens"] for r in hist.steps] == [32 * i for i in range(1, 7)]


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "steps must be a positive integer or None"),
    ("lr", float("inf"), "lr must be a finite number > 0"),
    ("lr", -1e-3, "lr must be a finite number > 0"),
    ("grad_clip", -1.0, "grad_clip must be ≥ 0"),
    ("adam_betas", (1.5, 0.9), "adam_betas must be two numbers in \\[0, 1\\)"),
    ("adam_betas", (0.9, 1.0), "adam_betas must be two numbers in \\[0, 1\\)"),
    ("checkpoint_every", -1, "checkpoint_every must be an integer ≥ 0"),
    ("device", "tpu", "unknown device 'tpu'"),
    ("adam_eps", 0.0, "adam_eps must be a finite number > 0"),
    ("min_lr_ratio", 2.0, "min_lr_ratio must be in \\[0, 1\\]"),
])
def test_nonsense_settings_are_refused_up_front(field, value, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**{field: value}).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch sees a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="device 'cuda': no CUDA GPU is usable"):
        cfg(device="cuda").validate()


def test_divergence_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A NaN at step 13 (after the step-10 checkpoint) is found at the next log/checkpoint, never
    synced per step; nothing diverged is written and the step-10 checkpoint stays."""
    from probsae.errors import TrainingDivergedError
    from probsae.training.checkpoint import load_checkpoint

    original = Member.step

    def poisoned(self, batch, step, total):
        info = original(self, batch, step, total)
        if step == 13:
            with torch.no_grad():
                self.sae.W_enc.fill_(float("nan"))
        return info

    monkeypatch.setattr(Member, "step", poisoned)
    run = tmp_path / "run"
    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    with pytest.raises(TrainingDivergedError, match="between steps 10 and 20.*last good checkpoint \\(step 10\\)"):
        probsae.train(sae, data(), cfg(steps=30, checkpoint_every=10), run_dirs=[run])
    assert load_checkpoint(run)["step"] == 10
    assert not (run / "sae.safetensors").exists()
    text = (run / "log.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: null
    assert json.loads(text.splitlines()[-1])["loss"] is None


def test_a_huge_learning_rate_is_a_clear_error_not_nan_results():
    from probsae.errors import TrainingDivergedError

    sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4)
    with pytest.raises(TrainingDivergedError, match="lr=1e\\+30"):
        probsae.train(sae, data(), cfg(steps=20, lr=1e30, warmup_steps=0))


@pytest.mark.parametrize("kill_at", [13, 25])
def test_logged_averages_do_not_depend_on_a_resume(tmp_path, monkeypatch, kill_at):
    # deterministic: the logs are compared exactly with an uninterrupted run's; on CUDA the atomic
    # adds of the sparse backward round differently from run to run without it (CPU: exact anyway)
    c = cfg(steps=30, checkpoint_every=12, log_every=10, deterministic=True)
    reference = probsae.train(probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=2), data(), c)
    original = Member.step

    def dying(self, batch, step, total):
        if step == kill_at:
            raise KeyboardInterrupt
        return original(self, batch, step, total)

    monkeypatch.setattr(Member, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        probsae.train(probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=2), data(), c, run_dirs=[tmp_path])
    monkeypatch.setattr(Member, "step", original)
    resumed = probsae.train(probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=2), data(), c, run_dirs=[tmp_path])
    keys = ("loss", "l0", "grad_norm", "explained_variance")
    assert [{k: r[k] for k in keys} for r in resumed.steps] == [{k: r[k] for k in keys} for r in reference.steps]

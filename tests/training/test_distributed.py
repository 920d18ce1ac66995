"""Distributed training on CPU with gloo: 2 processes launched by ``torch.distributed.run``.

This file is also the worker script (``python -m torch.distributed.run ... test_distributed.py
PHASES OUT``). Two launches (~10–15 s each on 2 shared CPU cores):

launch 1: data-parallel topk (compared with a single process), prob_topk and batchtopk (ranks in
          sync), members mode (compared with a single process), a prob_topk reference run and the
          same run killed after a checkpoint (which ends the launch: a failure tears the group down);
launch 2: resume of the killed run (compared with the uninterrupted one), then one rank fails
          (NaN rows in its shard only) and the job must exit non-zero quickly with a clear message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import probsae
from probsae.training.distributed import DistContext

D_IN, D_SAE, N_ROWS, BATCH, STEPS = 16, 64, 1024, 64, 20
ATOL = 1e-5  # float32; the only difference from one process is the order of the gradient sums


def activations() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(N_ROWS, D_IN, generator=g)
    return base @ torch.randn(D_IN, D_IN, generator=g) + 0.5  # correlated, off-centre


def cfg(**kw) -> probsae.TrainConfig:
    # gloo on the CPU even on a GPU machine: these tests are about the protocol, not the device
    base = dict(steps=STEPS, batch_size=BATCH, lr=3e-3, progress=False, log_every=5, seed=7, device="cpu")
    base.update(kw)
    return probsae.TrainConfig(**base)


def members_saes():
    return [probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=4, seed=1),
            probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=8, seed=2),
            probsae.build_sae("relu", d_in=D_IN, d_sae=D_SAE, seed=3)]


class Batches:
    """A fixed, re-iterable sequence of global batches; ``stop_at`` kills the process there
    (``os._exit``: no cleanup, like a SIGKILL; the pause lets the peer finish the last collective)."""

    def __init__(self, stop_at: int | None = None):
        self.x, self.stop_at = activations(), stop_at

    def __len__(self):
        return N_ROWS // BATCH

    def __iter__(self):
        for i in range(len(self)):
            if self.stop_at is not None and i == self.stop_at:
                time.sleep(0.5)
                os._exit(0)
            yield self.x[i * BATCH : (i + 1) * BATCH]


class PoisonedRank1:
    """Global batches whose rows for rank 1 contain NaN from batch 3 on (rank 0's rows are fine)."""

    def __iter__(self):
        x = activations()
        for i in range(N_ROWS // BATCH):
            b = x[i * BATCH : (i + 1) * BATCH].clone()
            if i >= 3:
                b[BATCH // 2 :, 0] = float("nan")
            yield b


# ------------------------------------------------------------------------------------------------
# worker side
# ------------------------------------------------------------------------------------------------
def _worker(phases: list[str], out: Path) -> None:
    import torch.distributed as dist

    def save(name, obj):
        torch.save(obj, out / f"{name}_rank{os.environ['RANK']}.pt")

    def state(sae):
        return {k: v.detach().cpu().clone() for k, v in sae.state_dict().items()}

    x = activations()
    for phase in phases:
        if phase == "data_topk":
            sae = probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=4)
            h = probsae.train(sae, x, cfg(checkpoint_every=10), run_dirs=[out / "data_topk"])
            save(phase, {"state": state(sae), "final": h.final})
        elif phase in ("data_prob_topk", "data_batchtopk"):
            arch = phase.removeprefix("data_")
            sae = probsae.build_sae(arch, d_in=D_IN, d_sae=D_SAE, k=4)
            h = probsae.train(sae, x, cfg())
            save(phase, {"state": state(sae), "final": h.final})
        elif phase == "members":
            saes = members_saes()
            dirs = [out / f"member{i}" for i in range(len(saes))]
            hs = probsae.train(saes, x, cfg(distribute="members"), run_dirs=dirs)
            save(phase, {"states": [state(s) for s in saes], "finals": [h.final for h in hs]})
        elif phase == "resume_ref":
            sae = probsae.build_sae("prob_topk", d_in=D_IN, d_sae=D_SAE, k=4)
            probsae.train(sae, Batches(), cfg(steps=16, checkpoint_every=5), run_dirs=[out / "resume_ref"])
            save(phase, state(sae))
        elif phase == "resume_kill":  # must end its launch: both ranks are killed at step 12
            sae = probsae.build_sae("prob_topk", d_in=D_IN, d_sae=D_SAE, k=4)
            probsae.train(sae, Batches(stop_at=12), cfg(steps=16, checkpoint_every=5), run_dirs=[out / "resume"])
            raise AssertionError("the simulated kill did not happen")
        elif phase == "resume_continue":
            sae = probsae.build_sae("prob_topk", d_in=D_IN, d_sae=D_SAE, k=4)
            probsae.train(sae, Batches(), cfg(steps=16, checkpoint_every=5), run_dirs=[out / "resume"])
            save(phase, state(sae))
        elif phase == "fail":
            (out / f"fail_start_rank{os.environ['RANK']}").write_text(str(time.time()))
            sae = probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=4)
            probsae.train(sae, PoisonedRank1(), cfg(steps=12, dist_timeout_s=120))
            raise AssertionError("training on NaN rows did not fail")
        else:
            raise ValueError(phase)
        if dist.is_initialized():
            dist.barrier()


# ------------------------------------------------------------------------------------------------
# pytest side
# ------------------------------------------------------------------------------------------------
def _launch(phases: list[str], out: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--monitor-interval", "0.2", __file__, ",".join(phases), str(out)]
    # A session of its own, so a timeout kills the workers too (not only the launcher).
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as p:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            stdout, stderr = p.communicate()
            pytest.fail(f"torchrun launch timed out after {timeout}s:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    (out / "launch_end").write_text(str(time.time()))
    return subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def launch1(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = _launch(["data_topk", "data_prob_topk", "data_batchtopk", "members", "resume_ref", "resume_kill"], out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def launch2(launch1):
    proc = _launch(["resume_continue", "fail"], launch1)
    assert (launch1 / "fail_start_rank0").is_file(), proc.stdout[-3000:] + proc.stderr[-6000:]
    return launch1, proc


def _load(out: Path, name: str, rank: int):
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=False)


def _assert_states_close(a: dict, b: dict, atol: float, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        diff = (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0
        assert torch.allclose(a[k].double(), b[k].double(), atol=atol, rtol=0), f"{what}: {k} differs by {diff:.3g}"


def _assert_identical(a: dict, b: dict, what: str) -> None:
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs between ranks"


def test_data_parallel_matches_single_process(launch1):
    out = launch1
    r0, r1 = _load(out, "data_topk", 0), _load(out, "data_topk", 1)
    _assert_identical(r0["state"], r1["state"], "data-parallel topk")
    ref = probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=4)
    h = probsae.train(ref, activations(), cfg())
    changed = (ref.W_enc.detach() - probsae.build_sae("topk", d_in=D_IN, d_sae=D_SAE, k=4).W_enc).abs().max()
    assert changed > 1e-2  # training really moved the weights, so the comparison means something
    _assert_states_close(r0["state"], {k: v.detach() for k, v in ref.state_dict().items()}, ATOL, "DDP vs 1 process")
    # logged global-batch metrics agree too (loss averaged over ranks, EV from all rows, liveness)
    for key in ("loss", "mse", "explained_variance", "l0", "grad_norm"):
        assert r0["final"][key] == pytest.approx(h.final[key], rel=1e-4, abs=1e-6), key
    assert r0["final"]["alive"] == h.final["alive"] and r0["final"]["tokens"] == h.final["tokens"]
    # only rank 0 wrote the run directory, and exactly one log record per logged step
    run = out / "data_topk"
    assert (run / "sae.safetensors").is_file() and (run / "checkpoint.safetensors").is_file()
    steps = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "step" in r]
    assert steps == [5, 10, 15, 20]
    saved = probsae.load_sae(run)
    _assert_states_close({k: v for k, v in saved.state_dict().items()}, r0["state"], 0.0, "saved SAE")


def test_prob_topk_and_batchtopk_stay_in_sync(launch1):
    out = launch1
    for name in ("data_prob_topk", "data_batchtopk"):
        r0, r1 = _load(out, name, 0), _load(out, name, 1)
        _assert_identical(r0["state"], r1["state"], name)
        assert all(torch.isfinite(v).all() for v in r0["state"].values() if v.is_floating_point())
        assert r0["final"]["l0"] > 0 and r0["final"]["explained_variance"] > 0.2
    # BatchTopK: per-rank top-(k·B/W) selection; the inference threshold is the cross-rank mean
    assert float(_load(out, "data_batchtopk", 0)["state"]["threshold"]) > 0


def test_members_mode_matches_single_process(launch1):
    out = launch1
    r0, r1 = _load(out, "members", 0), _load(out, "members", 1)
    saes = members_saes()
    hs = probsae.train(saes, activations(), cfg())
    for i, sae in enumerate(saes):
        ref = {k: v.detach() for k, v in sae.state_dict().items()}
        _assert_states_close(r0["states"][i], ref, 1e-6, f"member {i} on rank 0")
        _assert_identical(r0["states"][i], r1["states"][i], f"member {i}")  # broadcast back to all ranks
        assert r0["finals"][i]["loss"] == pytest.approx(hs[i].final["loss"], rel=1e-5)
        assert (out / f"member{i}" / "sae.safetensors").is_file()
        assert (out / f"member{i}" / "log.jsonl").is_file()


def test_resume_under_ddp_continues_exactly(launch2):
    out, proc = launch2
    assert (out / "resume_continue_rank0.pt").is_file(), proc.stderr[-5000:]
    # it really resumed (one start event; steps 11–16 logged by the second launch), and it ended
    # where the uninterrupted run did
    recs = [json.loads(line) for line in (out / "resume" / "log.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "start" for r in recs) == 1
    assert [r["step"] for r in recs if "step" in r and not r.get("event")] == [5, 10, 15, 16]
    ref = _load(out, "resume_ref", 0)
    for rank in (0, 1):
        got = _load(out, "resume_continue", rank)
        # prob_topk draws gate noise per rank: equality needs every rank's RNG state restored
        _assert_states_close(got, ref, 1e-6, f"resumed run on rank {rank}")


def test_failing_rank_stops_the_job_quickly(launch2):
    out, proc = launch2
    assert proc.returncode != 0
    started = min(float((out / f"fail_start_rank{r}").read_text()) for r in (0, 1))
    ended = float((out / "launch_end").read_text())
    assert ended - started < 30, "the job hung instead of failing fast"  # the group timeout was 120 s
    err = proc.stderr
    assert "training failed on this rank: InputError" in err and "NaN" in err
    assert "rank 0" in err and ("another rank" in err or "stopping" in err)


def test_single_process_context_is_inert():
    ctx = DistContext()
    x = torch.randn(6, 3)
    assert ctx.shard(x) is x and ctx.writes(5) and ctx.owns(3) and not ctx.active
    mask = torch.tensor([True, False])
    assert ctx.global_fired(mask, 6) == (mask, 6)


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_more_processes_than_gpus_is_a_clear_error_before_any_cuda_call(monkeypatch, device):
    from probsae.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr("probsae.devices.cuda_count", lambda: 1)  # what one GPU reports

    def no_cuda_call(*a, **k):
        raise AssertionError("a CUDA call was made before the check")

    monkeypatch.setattr(torch.cuda, "set_device", no_cuda_call)
    monkeypatch.setattr(torch.distributed, "init_process_group", no_cuda_call)
    with pytest.raises(probsae.ConfigError) as e:
        distributed.setup(cfg(device=device))
    msg = str(e.value)
    assert "WORLD_SIZE=2/LOCAL_RANK=1" in msg and "cuda:1" in msg and "only 1 CUDA device" in msg
    assert "--nproc-per-node 1" in msg


def test_a_missing_gpu_is_a_clear_error(monkeypatch):
    from probsae.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr("probsae.devices.cuda_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(probsae.ConfigError, match=r"cuda:3.*only 2 CUDA device"):
        resolve_device("cuda:3")
    monkeypatch.setattr("probsae.devices.cuda_count", lambda: 0)
    with pytest.raises(probsae.ConfigError, match="device 'cuda': no CUDA GPU is usable"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(probsae.ConfigError, match="unknown device"):
        resolve_device("gpu7")


def test_distribute_field_is_validated():
    with pytest.raises(probsae.ConfigError, match="distribute"):
        probsae.TrainConfig(distribute="pipeline").validate()


if __name__ == "__main__":
    _worker(sys.argv[1].split(","), Path(sys.argv[2]))

"""Checkpoints: pickle-free, checksummed, never written with diverged weights."""

import errno
import math
import os

import pytest
import torch

import probsae
from probsae.errors import SAEFileError, TrainingDivergedError
from probsae.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, restore, save_checkpoint
from probsae.training.liveness import Liveness


class Evil:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def plant_pickle(run_dir, marker):
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 5, "architecture": "topk", "payload": Evil(marker)}, run_dir / "checkpoint.pt")


def objects(seed=0):
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2, seed=seed)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3, betas=(0.9, 0.99))
    live = Liveness(16, 1000)
    return sae, opt, live


def test_round_trip_restores_everything(tmp_path):
    sae, opt, live = objects()
    out = sae(torch.randn(32, 8))
    out.loss.backward()
    opt.step()
    live.update(torch.rand(16) > 0.5, 32)
    extra = {"rank_rng": [(torch.get_rng_state(), None)], "world_size": 1, "pos": {"doc": 3, "nan": math.nan},
             "$odd": 1, 7: "int key"}
    save_checkpoint(tmp_path, 11, sae, opt, live, extra, log_state={"sums": {"loss": torch.tensor(2.5)}, "count": 3})
    state = load_checkpoint(tmp_path)
    assert state["step"] == 11 and state["log_state"]["count"] == 3 and float(state["log_state"]["sums"]["loss"]) == 2.5
    e = state["extra"]
    assert e["world_size"] == 1 and e["$odd"] == 1 and e[7] == "int key" and math.isnan(e["pos"]["nan"])
    assert isinstance(e["rank_rng"][0], tuple) and torch.equal(e["rank_rng"][0][0], torch.get_rng_state())
    sae2, opt2, live2 = objects(seed=1)
    assert restore(state, sae2, opt2, live2) == 11
    for k, v in sae.state_dict().items():
        assert torch.equal(v, sae2.state_dict()[k]), k
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])
    assert torch.equal(live.last_fired, live2.last_fired) and live2.tokens_seen == 32


def test_a_crafted_pickle_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    plant_pickle(run, marker)
    with pytest.raises(SAEFileError, match="old pickle format.*arbitrary code"):
        load_checkpoint(run)
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    cfg = probsae.TrainConfig(steps=4, batch_size=16, progress=False)
    with pytest.raises(SAEFileError, match="old pickle format"):
        probsae.train(sae, torch.randn(64, 8), cfg, run_dirs=[run])
    assert not marker.exists(), "the pickle was unpickled"


def test_a_flipped_byte_is_refused(tmp_path):
    sae, opt, live = objects()
    save_checkpoint(tmp_path, 3, sae, opt, live)
    path = tmp_path / CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(SAEFileError, match="is corrupt: its CRC-32"):
        load_checkpoint(tmp_path)


def test_diverged_weights_are_never_checkpointed(tmp_path):
    sae, opt, live = objects()
    save_checkpoint(tmp_path, 3, sae, opt, live)
    good = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with torch.no_grad():
        sae.W_dec[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="W_dec"):
        save_checkpoint(tmp_path, 4, sae, opt, live)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == good


def test_an_unreadable_checkpoint_says_so(tmp_path, monkeypatch):
    sae, opt, live = objects()
    save_checkpoint(tmp_path, 3, sae, opt, live)
    real_open = open

    def denied(path, *a, **kw):
        if str(path).endswith(CHECKPOINT_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(SAEFileError, match="cannot read .*checkpoint.safetensors \\(permission denied\\)") as e:
        load_checkpoint(tmp_path)
    assert "corrupt" not in str(e.value) and "Delete" not in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not denied by file permissions")
def test_an_unreadable_checkpoint_says_so_for_real(tmp_path):
    sae, opt, live = objects()
    save_checkpoint(tmp_path, 3, sae, opt, live)
    (tmp_path / CHECKPOINT_FILE).chmod(0)
    try:
        with pytest.raises(SAEFileError, match="permission denied"):
            load_checkpoint(tmp_path)
    finally:
        (tmp_path / CHECKPOINT_FILE).chmod(0o644)


def test_a_tensor_learning_rate_stays_the_live_tensor(tmp_path):
    """The CUDA-graph step gives Adam its learning rate as a device tensor that the captured graph
    reads; a restored optimizer must keep that tensor (a loaded one is a CPU copy, which fused Adam
    would read once, at capture, freezing the schedule)."""
    sae, opt, live = objects()
    opt.param_groups[0]["lr"] = torch.tensor(2e-3)
    save_checkpoint(tmp_path, 3, sae, opt, live)
    sae2, opt2, live2 = objects(seed=1)
    mine = torch.tensor(5e-4)
    opt2.param_groups[0]["lr"] = mine
    restore(load_checkpoint(tmp_path), sae2, opt2, live2)
    assert opt2.param_groups[0]["lr"] is mine and float(mine) == pytest.approx(2e-3)


def test_restored_adam_moments_share_their_parameters_layout(tmp_path):
    """W_enc is a transpose view; a checkpoint stores its moments contiguous. Fused Adam walks a
    parameter and its moments as flat memory, so restore must give them the parameter's layout."""
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2, fused=True)
    sae(torch.randn(16, 8)).loss.backward()
    opt.step()
    live = Liveness(32, 1000)
    save_checkpoint(tmp_path, 1, sae, opt, live)
    sae2 = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    opt2 = torch.optim.Adam(sae2.parameters(), lr=1e-2, fused=True)
    restore(load_checkpoint(tmp_path), sae2, opt2, Liveness(32, 1000))
    for key in ("exp_avg", "exp_avg_sq"):
        moment = opt2.state[sae2.W_enc][key]
        assert moment.stride() == sae2.W_enc.stride() and torch.equal(moment, opt.state[sae.W_enc][key])

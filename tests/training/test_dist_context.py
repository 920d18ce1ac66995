"""The per-mode distributed contexts, without a process group: roles, sharding, and a Member
built with its role (no editing from outside)."""

from __future__ import annotations

import torch

import probsae
from probsae.training.dist_context import DistContext
from probsae.training.dist_data import DataParallel
from probsae.training.dist_members import MembersParallel
from probsae.training.distributed import MODES
from probsae.training.member import Member


def test_each_mode_has_its_class():
    assert MODES == {"data": DataParallel, "members": MembersParallel}
    assert DistContext().mode == "single" and DataParallel(0, 2).mode == "data" and MembersParallel(0, 2).mode == "members"


def test_roles_per_mode():
    single, data1, members1 = DistContext(), DataParallel(1, 2), MembersParallel(1, 3)
    assert single.member_sync() is None and members1.member_sync() is None and data1.member_sync() is data1
    assert data1.data_parallel and not data1.members_mode and data1.data_world == 2
    assert members1.members_mode and not members1.data_parallel and members1.data_world == 1
    assert not data1.writes(0) and DataParallel(0, 2).writes(5)  # rank 0 writes every run directory
    assert [members1.owner_of(i) for i in range(5)] == [0, 1, 2, 0, 1]
    assert members1.writes(4) and not members1.writes(3) and members1.owns(1)
    assert data1.owns(7) and data1.active and not single.active


def test_data_shard_is_this_ranks_slice():
    x = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(DataParallel(2, 3).shard(x), x[4:6])
    try:
        DataParallel(0, 4).shard(x)
    except probsae.ConfigError as e:
        assert "not divisible by the world size 4" in str(e)
    else:
        raise AssertionError("an indivisible batch was sharded")


def test_single_batch_metrics():
    x, r = torch.randn(8, 3), torch.randn(8, 3)
    mse, ev = DistContext().batch_metrics(x, r)
    sse = (r.double() - x.double()).pow(2).sum()
    assert abs(mse - float(sse / 8)) < 1e-9
    assert abs(ev - (1 - float(sse / (x.double() - x.double().mean(0)).pow(2).sum()))) < 1e-9


def test_member_is_built_with_its_role(tmp_path):
    sae = probsae.build_sae("topk", d_in=4, d_sae=8, k=2)
    cfg = probsae.TrainConfig(progress=False, device="cpu")
    ctx = DataParallel(1, 2)
    m = Member(sae, cfg, torch.device("cpu"), tmp_path / "run", None, dist=ctx.member_sync(), writer=ctx.writes(0))
    assert m.dist is ctx and m.writer is False and m.logger.path is None  # a silent log on a non-writer
    plain = Member(sae, cfg, torch.device("cpu"), tmp_path / "run", None)
    assert plain.dist is None and plain.writer and plain.logger.path == tmp_path / "run" / "log.jsonl"

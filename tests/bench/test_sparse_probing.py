"""The sparse-probing metric's wiring with known answers: pooled latents where one latent carries
the class (k = 1 accuracy 1) and latents independent of it (accuracy ≈ 0.5), per member and task."""

from types import SimpleNamespace

import pytest
import torch

from probsae.bench import sparse_probing as sp
from probsae.bench.context import HookContext
from probsae.bench.settings import BenchSettings
from probsae.bench.tasks import ProbeTask


def planted_extract(ctx):
    g = torch.Generator().manual_seed(0)
    dense, lat = {}, {}
    for t in ctx.tasks:
        for split, d in (("train", t.train), ("test", t.test)):
            for c, cls in enumerate(d):
                n = len(d[cls])
                informative = torch.rand(n, 40, generator=g)
                informative[:, 3 + c] += 2.0          # latent 3 + c fires on class c
                dense[(t.name, split, cls)] = informative[:, :16]
                lat[(t.name, split, cls)] = {"planted": informative, "noise": torch.rand(n, 40, generator=g)}
    return dense, lat, 1.5


def test_planted_latent_gives_k1_accuracy_one_and_noise_gives_chance(monkeypatch):
    monkeypatch.setattr(sp, "extract", planted_extract)
    task = ProbeTask("t", "toy", {c: ["x"] * 150 for c in "abc"}, {c: ["x"] * 150 for c in "abc"})
    members = [SimpleNamespace(name="planted"), SimpleNamespace(name="noise")]
    ctx = HookContext("m", "h", members, BenchSettings(ks=(1, 5)), [task])
    out = sp.sparse_probing(ctx)
    assert out["planted"]["tasks"]["t"]["sae_top_k"]["1"]["mean"] == 1.0
    assert out["noise"]["tasks"]["t"]["sae_top_k"]["1"]["mean"] == pytest.approx(0.5, abs=0.08)
    assert out["noise"]["tasks"]["t"]["sae_top_k"]["5"]["mean"] == pytest.approx(0.5, abs=0.08)
    assert out["planted"]["tasks"]["t"]["dense"]["mean"] == 1.0, "the dense features hold the planted dims"
    assert out["planted"]["mean"]["sae_top_k"]["1"] == 1.0 and out["planted"]["ks"] == [1, 5]
    assert out["noise"]["tasks"]["t"]["dense"] == out["planted"]["tasks"]["t"]["dense"], "one dense baseline per hook"
    assert out["planted"]["seconds"]["shared_extraction"] == 1.5

"""The per-step path without host syncs: finiteness check policy, sync-free AuxK and fired mask,
precision and CUDA-graph options of Member."""

from __future__ import annotations

import pytest
import torch

import probsae
from probsae.errors import ConfigError, InputError
from probsae.kernels import KernelPolicy
from probsae.saes.options import ForwardOptions
from probsae.saes.topk import auxk_loss
from probsae.training.config import TrainConfig
from probsae.training.member import Member, StepGraph


def test_finite_check_policy():
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4).train()
    x = torch.randn(4, 8)
    x[1, 2] = float("nan")
    with pytest.raises(InputError, match="NaN/inf"):
        sae(x)  # 'auto' on CPU: checked (free of host syncs here)
    sae(x, options=ForwardOptions(finite_check="never"))
    with pytest.raises(InputError, match="NaN/inf"):
        sae(x, options=ForwardOptions(finite_check="always"))
    with pytest.raises(ConfigError, match="check_finite"):
        TrainConfig(check_finite="sometimes").validate()
    m = Member(sae, TrainConfig(check_finite="never", progress=False, device="cpu"), torch.device("cpu"), None, None)
    assert m.options.finite_check == "never"


def test_auxk_loss_without_host_sync_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    pre, residual, W = torch.randn(16, 40, generator=g), torch.randn(16, 6, generator=g), torch.randn(40, 6, generator=g)
    dead = torch.zeros(40, dtype=torch.bool)
    assert float(auxk_loss(pre, residual, dead, 8, W)) == 0.0  # nothing dead: no loss
    dead[[3, 7, 11]] = True  # fewer dead latents than aux_k
    values, idx = pre[:, [3, 7, 11]], torch.tensor([3, 7, 11]).expand(16, 3)
    recon = (values.relu()[:, :, None] * W[idx]).sum(1)
    expect = (recon - residual).pow(2).sum(-1).mean() / (residual - residual.mean(0)).pow(2).sum(-1).mean()
    torch.testing.assert_close(auxk_loss(pre, residual, dead, 8, W), expect, rtol=1e-5, atol=1e-6)


def test_topk_with_auxk_trains():
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4, aux_k=8).train()
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:10] = True
    out = sae(torch.randn(64, 8), dead_mask=dead)
    assert "auxk" in out.losses and float(out.losses["auxk"].detach()) > 0
    out.loss.backward()
    assert sae.W_enc.grad[:, :10].abs().sum() > 0  # dead latents learn through AuxK


@pytest.mark.parametrize("arch", ["topk", "prob_topk"])
def test_fired_mask_matches_dense_codes(arch):
    sae = probsae.build_sae(arch, d_in=8, d_sae=48, k=3)
    out = sae(torch.randn(10, 8))
    with torch.no_grad():
        out.top_values[0, 0] = 0.0  # a selected latent with a zero code has not fired
    expect = (torch.zeros(10, 48).scatter(1, out.top_indices, out.top_values) != 0).any(0)
    assert torch.equal(out.fired(), expect)


def test_precision_options():
    for p in ("auto", "fp32", "bf16"):
        TrainConfig(precision=p).validate()
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16").validate()
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    exact = Member(sae, TrainConfig(precision="fp32", progress=False, device="cpu"), torch.device("cpu"), None, None)
    assert exact.options.policy == KernelPolicy(encoder_precision="fp32")
    auto = Member(sae, TrainConfig(progress=False, device="cpu"), torch.device("cpu"), None, None)
    assert auto.options.policy == KernelPolicy()


def test_cuda_graph_only_where_it_can_be_captured():
    cfg = TrainConfig(cuda_graph=True)
    topk = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    assert StepGraph.wanted(topk, cfg, torch.device("cpu")) is None
    assert isinstance(StepGraph.wanted(topk, cfg, torch.device("cuda")), StepGraph)
    assert StepGraph.wanted(probsae.build_sae("relu", d_in=8, d_sae=32), cfg, torch.device("cuda")) is None
    assert StepGraph.wanted(probsae.build_sae("topk", d_in=8, d_sae=32, k=4, aux_k=4), cfg, torch.device("cuda")) is None
    assert isinstance(StepGraph.wanted(topk, TrainConfig(), torch.device("cuda")), StepGraph)  # the default
    assert StepGraph.wanted(topk, TrainConfig(cuda_graph=False), torch.device("cuda")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("arch,kw", [("topk", {}), ("prob_topk", {}), ("prob_topk", {"score": "logit"})])
def test_cuda_graph_replays_the_eager_step(arch, kw):
    """Training with the step captured in a CUDA graph (after the eager warm-up steps) ends with
    the same weights as eager training. The sorted (deterministic) scatter is used so that both
    runs sum in the same order; the graph replays the very kernels the eager step launches, so the
    tolerance is float rounding only. With score 'logit' the noise scale β/β₀ changes every step:
    the graph must read it from the device, as it reads β."""
    data = torch.randn(12 * 64, 16, generator=torch.Generator().manual_seed(0)).cuda()
    trained = []
    for graph in (False, True):
        sae = probsae.build_sae(arch, d_in=16, d_sae=128, k=4, seed=3, **kw)
        cfg = TrainConfig(steps=10, batch_size=64, lr=1e-3, warmup_steps=2, progress=False, device="cuda",
                          cuda_graph=graph)
        probsae.train(sae, data, cfg, kernels=KernelPolicy(scatter="sorted"))
        trained.append(sae)
    for name in ("W_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(trained[1], name), getattr(trained[0], name), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_failed_cuda_graph_capture_continues_eagerly(monkeypatch):
    """A capture that CUDA invalidates (e.g. another thread's unsafe CUDA call in global capture
    mode) warns and leaves the SAE training eagerly, ending where eager training ends."""
    def invalidated(self, member, stream):  # a failed capture has run none of the step's kernels
        raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    data = torch.randn(12 * 64, 16, generator=torch.Generator().manual_seed(0)).cuda()
    trained = []
    for graph in (False, True):
        sae = probsae.build_sae("topk", d_in=16, d_sae=128, k=4, seed=3)
        cfg = TrainConfig(steps=10, batch_size=64, lr=1e-3, warmup_steps=2, progress=False, device="cuda",
                          cuda_graph=graph)
        sorted_scatter = KernelPolicy(scatter="sorted")
        if graph:
            monkeypatch.setattr(StepGraph, "_capture", invalidated)
            with pytest.warns(RuntimeWarning, match="capture of the training step failed"):
                probsae.train(sae, data, cfg, kernels=sorted_scatter)
        else:
            probsae.train(sae, data, cfg, kernels=sorted_scatter)
        trained.append(sae)
    for name in ("W_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(trained[1], name), getattr(trained[0], name), rtol=1e-5, atol=1e-6)

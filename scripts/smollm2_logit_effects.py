"""Logit effects on SmolLM2-135M with and without the final RMSNorm gain, against the model's own
logit change (docs/INTERP.md, "Logit effects").

    PYTHONPATH=src python scripts/smollm2_logit_effects.py /work/runs/smollm2-cpu/runs/prob_topk-k=8

Directions: ``--n-latents`` random decoder rows of the run's SAE (seeded), latent 190 of the issue
and one random direction. Reference: at real residual points (the final norm's input at every token
of a short text), the central difference (logits(x + εd) − logits(x − εd)) / 2ε through the model's
own ``model.norm`` and ``lm_head``, ε = 1e-3·|x|/|d|. Prints the mean top-10 overlaps.
"""

from __future__ import annotations

import argparse

import torch

TEXT = ("The capital of France is Paris. London is the capital of England, and the river Thames "
        "flows through it. def parse(path): return open(path).read()")


def top(v: torch.Tensor, n: int = 10) -> list[int]:
    return v.topk(n).indices.tolist()


def main() -> None:
    from probsae import load_sae
    from probsae.data import load_model
    from probsae.data.unembed import find_final_norm, folded_unembedding

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--n-latents", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sae = load_sae(args.run).eval()
    h = load_model(sae.metadata.model_name or "smollm2")
    W, norm = folded_unembedding(h.model)
    W_U = h.model.get_output_embeddings().weight.detach().float()
    path, module = find_final_norm(h.model)
    print(f"model {h.name}: final norm {path} ({norm.kind}), gain from {norm.gain.min():.2f} to {norm.gain.max():.2f}")

    xs = []
    hook = module.register_forward_pre_hook(lambda m, a: xs.append(a[0].detach().float()))
    with torch.no_grad():
        h.model(**h.tokenizer(TEXT, return_tensors="pt"))
    hook.remove()
    points = xs[0][0]                                           # (T, d_model): real residual points

    g = torch.Generator().manual_seed(args.seed)
    latents = torch.randperm(sae.d_sae, generator=g)[:args.n_latents].tolist() + [190]
    dirs = torch.cat([sae.W_dec.detach().float()[latents], torch.randn(1, h.d_model, generator=g)])
    names = [f"latent {l}" for l in latents] + ["random direction"]

    def model_change(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        eps = 1e-3 * float(x.norm() / d.norm())
        with torch.no_grad():
            up = h.model.lm_head(module((x + eps * d).view(1, 1, -1))).float()
            down = h.model.lm_head(module((x - eps * d).view(1, 1, -1))).float()
        return ((up - down) / (2 * eps)).view(-1)

    ov = {"folded∩model": [], "unfolded∩model": [], "folded∩unfolded": []}
    for name, d in zip(names, dirs):
        f, u = set(top(W @ d)), set(top(W_U @ d))
        ov["folded∩unfolded"].append(len(f & u))
        for x in points:
            m = set(top(model_change(x, d)))
            ov["folded∩model"].append(len(f & m))
            ov["unfolded∩model"].append(len(u & m))
        if name in ("latent 190", "random direction"):
            dec = lambda ids: [h.tokenizer.decode([i]) for i in ids]          # noqa: E731
            print(f"{name}: folded {dec(top(W @ d))}\n    unfolded {dec(top(W_U @ d))}\n"
                  f"    model (token 0) {dec(top(model_change(points[0], d)))}")
    print(f"{len(dirs)} directions × {len(points)} residual points; mean top-10 overlap (of 10):")
    for k, v in ov.items():
        print(f"  {k}: {sum(v) / len(v):.2f}  (min {min(v)})")


if __name__ == "__main__":
    main()

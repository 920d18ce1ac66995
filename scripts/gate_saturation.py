"""How much does float32 saturation change Probabilistic TopK's selection? A direct measurement.

For a trained ``prob_topk`` SAE and held-out activations, draws one logistic-noise sample per
(token, latent) and, at each gate temperature β of the anneal, selects K latents with the paper's
score s = σ(g) + λ|a| and with the ``stable`` score λ|a| − σ(−g) (the same order in exact
arithmetic), g = (LN(a) + L)/β, from the SAME noise. Reports per β:

* saturated: the fraction of all gates whose σ(g) is exactly 1.0 in float32;
* tied: the fraction of selected latents whose paper score ties (as a float32) with another
  latent's — where the paper's order is decided by λ|a| alone;
* differ: the fraction of selected latents that the two scores choose differently;
* noisy ≠ clean: the fraction of selected latents that differ from the deterministic inference
  selection (what the noise still changes at that β).

    python scripts/gate_saturation.py runs/offline-en-cpu-quick/runs/prob_topk-k=8 \\
        --eval-cache cache/minilm-resid_pre.4-offline-en-ctx256-holdout-16384-float16 --tokens 4096
"""

from __future__ import annotations

import argparse
import sys

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a trained prob_topk run directory")
    p.add_argument("--eval-cache", required=True, help="an activation cache of held-out tokens")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)

    from probsae.errors import ProbSAEError
    from probsae.experiments.saturation import gated_sae_and_tokens, measure

    try:
        sae, x = gated_sae_and_tokens(args.run_dir, args.eval_cache, args.tokens, "prob_topk")
    except ProbSAEError as e:
        print(e, file=sys.stderr)
        return 2
    rows = measure(sae, x)
    print(f"| β | σ(g) = 1.0 exactly | K-th and (K+1)-th paper scores tie | paper ≠ stable selection "
          f"| noisy ≠ inference selection |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['beta']:g} | {100 * r['saturated']:.1f} % | {100 * r['tied']:.1f} % | {100 * r['differ']:.2f} % | "
              f"{100 * r['noisy_vs_clean']:.1f} % |")
    if args.json:
        from probsae.io import atomic_write_json

        atomic_write_json(args.json, {"run_dir": args.run_dir, "tokens": int(x.shape[0]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much does exporting a Probabilistic TopK SAE to SAELens/sparsify change its inference?

Neither library has the gate, so the export maps prob_topk onto a plain selection rule. For a
trained ``prob_topk`` SAE and held-out activations this compares probsae's inference with the two
candidate mappings, per token:

* TopK (what ``probsae export`` writes, SAELens 'topk' and sparsify 'topk'): the K largest
  a = W_enc(x − b_dec), ReLU'd; measured on the SAE that ``import_saelens`` reads back from the
  actual export;
* AbsTopK (what the SAELens export wrote before issue 24): the K largest |a|, signed.

Columns: same set = fraction of tokens whose active latents are the same set; same codes =
fraction whose codes are equal; FVU. Also the fraction of probsae's codes that are negative
(TopK's ReLU zeroes those).

    python scripts/ecosystem/prob_topk_export_agreement.py RUN_DIR --eval-cache CACHE_DIR --tokens 8192
"""

from __future__ import annotations

import argparse
import sys
import tempfile


def abstopk_mapping(sae):
    """The AbsTopK SAE with prob_topk's weights (b_enc = 0): SAELens 'abstopk' of the same file."""
    import torch

    from probsae import build_sae

    cfg = sae.config_dict()["config"]
    out = build_sae("abstopk", d_in=sae.d_in, d_sae=sae.d_sae, k=sae.cfg.k, normalize=cfg["normalize"])
    state = {k: v for k, v in sae.state_dict().items() if k in out.state_dict()}
    state["b_enc"] = torch.zeros(sae.d_sae)
    out.load_state_dict(state)
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a trained prob_topk run directory")
    p.add_argument("--eval-cache", required=True, help="an activation cache of held-out tokens")
    p.add_argument("--tokens", type=int, default=8192)
    args = p.parse_args(argv)

    from probsae.errors import ProbSAEError
    from probsae.experiments.saturation import gated_sae_and_tokens
    from probsae.formats import export_saelens, import_saelens
    from probsae.formats.agreement import inference_agreement

    try:
        sae, x = gated_sae_and_tokens(args.run_dir, args.eval_cache, args.tokens, "prob_topk")
    except ProbSAEError as e:
        print(e, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        report = export_saelens(sae, tmp, allow_lossy=True)
        topk = import_saelens(tmp).eval()
    rows = {f"TopK (the export: SAELens {report.target_architecture!r})": inference_agreement(sae, topk, x),
            "AbsTopK (K largest \\|a\\|, signed)": inference_agreement(sae, abstopk_mapping(sae), x)}
    first = next(iter(rows.values()))
    print(f"{first['tokens']} held-out tokens, K = {sae.cfg.k}, d_sae = {sae.d_sae}, β = {float(sae.beta):.3g}; "
          f"probsae's codes: {100 * first['negative_codes']:.2f} % negative; probsae FVU {first['fvu_source']:.4f}\n")
    print("| mapping | same latent set | same codes | FVU |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['same_set']:.1f} % | {100 * r['same_codes']:.1f} % | {r['fvu_exported']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

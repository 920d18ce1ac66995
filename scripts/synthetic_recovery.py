"""Train every architecture on toy activations with a known dictionary and print a table:
held-out explained variance, L0, alive latents and feature recovery (the setting of
tests/test_synthetic.py and probsae.evaluation.recovery: d_in 32, 64 true features, 3 active per
token on average, d_sae 128, 1000 steps of 256 tokens).

    .venv/bin/python scripts/synthetic_recovery.py
"""

import time

import torch

import probsae
from probsae.evaluation.recovery import D_SAE, HPARAMS, recovery, toy_data


def main() -> None:
    torch.set_num_threads(1)
    data = toy_data()
    print(f"| architecture | hyperparameters | explained variance | L0 | alive / {D_SAE} | recovery | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for arch in probsae.ARCHITECTURES:
        t0 = time.perf_counter()
        r = recovery(arch, data)
        m = r["metrics"]
        print(f"| {arch} | {HPARAMS[arch]} | {m['explained_variance']:.3f} | {m['l0']:.2f} | {m['alive']} | "
              f"{r['recovery']:.3f} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()

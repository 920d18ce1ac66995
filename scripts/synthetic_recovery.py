"""Train every architecture on toy activations with a known dictionary and print a table:
held-out explained variance, L0, alive latents and feature recovery (the setting of
tests/test_synthetic.py: d_in 32, 64 true features, 3 active per token on average, d_sae 128,
1000 steps of 256 tokens).

    .venv/bin/python scripts/synthetic_recovery.py
"""

import time

import torch

import probsae
from probsae.synthetic import SyntheticActivations, feature_recovery

HPARAMS = {
    "topk": {"k": 8}, "prob_topk": {"k": 8}, "abstopk": {"k": 8}, "batchtopk": {"k": 8},
    "vsae_topk": {"k": 8, "kl_coeff": 1e-5},
    "relu": {"l1_coeff": 0.1}, "gated": {"l1_coeff": 0.3}, "jumprelu": {"l0_coeff": 5e-3},
}


def main() -> None:
    torch.set_num_threads(1)
    gen = SyntheticActivations(d_in=32, n_features=64, avg_active=3.0, seed=11)
    train_x, test_x = gen.sample(30_000), gen.sample(4_000)
    print("| architecture | hyperparameters | explained variance | L0 | alive / 128 | recovery | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for arch in probsae.ARCHITECTURES:
        sae = probsae.build_sae(arch, d_in=32, d_sae=128, **HPARAMS[arch])
        t0 = time.perf_counter()
        probsae.train(sae, train_x, probsae.TrainConfig(steps=1000, batch_size=256, lr=5e-3, warmup_steps=50,
                                                         progress=False, log_every=500))
        m = probsae.evaluate(sae, test_x)
        rec = feature_recovery(gen.dictionary, sae.W_dec.detach(), absolute=arch in ("abstopk", "prob_topk"))
        print(f"| {arch} | {HPARAMS[arch]} | {m['explained_variance']:.3f} | {m['l0']:.2f} | {m['alive']} | "
              f"{rec:.3f} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""The training-curves figure of one run: explained variance, L0, alive latents, temperature."""

from __future__ import annotations

from pathlib import Path

from ..training.logger import step_records


def plot_training(records: list[dict], path: Path, title: str, d_sae: int | None = None) -> Path:
    import matplotlib

    from ..io import atomic_savefig, ensure_dir

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = step_records(records)
    tokens = [r["tokens"] / 1e6 for r in steps]
    panels = [("explained_variance", "explained variance (train batch)"), ("loss", "loss"),
              ("l0", "L0"), ("alive", "alive latents")]
    if any(r.get("beta") is not None for r in steps):
        panels.append(("beta", "gate temperature β"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0))
    for ax, (key, label) in zip(axes, panels):
        ys = [r.get(key) for r in steps]
        ax.plot(tokens, ys, color="tab:blue")
        ax.set_xlabel("tokens (M)")
        ax.set_title(label, fontsize=10)
        if key in ("loss", "beta") and all(y and y > 0 for y in ys):
            ax.set_yscale("log")
        if key == "alive" and d_sae:
            ax.axhline(d_sae, color="grey", lw=0.8, ls="--")
            ax.set_ylim(0, d_sae * 1.05)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    ensure_dir(path.parent)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path

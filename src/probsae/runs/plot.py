"""The training-curves figure of one run (``training.png``): explained variance, loss, L0 (only
where it varies), alive latents, gate temperature. Redrawn at every checkpoint while training runs
and once more at the end, written atomically so a viewer never sees a torn file."""

from __future__ import annotations

from pathlib import Path

from ..training.display import short_tokens
from ..training.logger import step_records


def plot_training(records: list[dict], path: Path, title: str, d_sae: int | None = None, *,
                  architecture: str | None = None, heldout_alive: int | None = None, final: bool = True) -> Path:
    """Draw ``records`` (log.jsonl step records) into ``path``.

    The alive panel shows ``alive_recent`` (latents that fired in the last ``alive_window`` tokens,
    a tenth of the run by default) when the log has it, and the training-window count dashed; its
    y-axis starts at 0 and ends at d_sae. L0 is drawn only when it varies (TopK-family L0 is K at
    every step; the title says so instead). ``heldout_alive``: the held-out evaluation's count,
    marked at the end. ``final=False`` marks the figure as a snapshot of a running job."""
    from ..extras import pyplot
    from ..io import atomic_savefig, ensure_dir
    from ..saes.style import colour

    plt = pyplot()
    steps = step_records(records)
    c = colour(architecture)
    tokens = [r["tokens"] / 1e6 for r in steps]
    l0 = [r.get("l0") for r in steps]
    fixed_l0 = bool(l0) and all(v is not None for v in l0) and max(l0) - min(l0) < 1e-6
    panels = [("explained_variance", "explained variance (train batch)"), ("loss", "loss")]
    if not fixed_l0:
        panels.append(("l0", "L0 (active latents per token)"))
    panels.append(("alive", "alive latents"))
    if any(r.get("beta") is not None for r in steps):
        panels.append(("beta", "gate temperature β"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training tokens (M)")
        ax.grid(alpha=0.3)
        if key == "alive":
            _alive_panel(ax, steps, tokens, d_sae, heldout_alive, c)
            continue
        ys = [r.get(key) for r in steps]
        ax.plot(tokens, ys, color=c)
        if key in ("loss", "beta") and ys and all(y and y > 0 for y in ys):
            ax.set_yscale("log")
    if fixed_l0:
        title += f"  ·  L0 = {l0[0]:g} at every step (fixed by the architecture)"
    if not final and steps:
        title += f"  ·  in progress: step {steps[-1]['step']}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    ensure_dir(path.parent)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def _alive_panel(ax, steps, tokens, d_sae, heldout_alive, c) -> None:
    recent = [r.get("alive_recent") for r in steps]
    train_window = [r.get("alive") for r in steps]
    if any(v is not None for v in recent):
        window = next(r["alive_window"] for r in steps if r.get("alive_window"))
        ax.plot(tokens, recent, color=c, label=f"fired in last {short_tokens(window)} tok")
        ax.plot(tokens, train_window, color=c, ls="--", lw=0.9, alpha=0.6, label="fired in training window")
    else:
        ax.plot(tokens, train_window, color=c, label="fired in training window")
    if heldout_alive is not None and tokens:
        ax.plot([tokens[-1]], [heldout_alive], marker="*", ms=11, color="k", ls="none",
                label=f"held-out eval: {heldout_alive:,}")
    if d_sae:
        ax.axhline(d_sae, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, d_sae * 1.05)
    ax.legend(fontsize=7, loc="lower right")


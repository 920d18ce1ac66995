"""Figures: one colour per architecture everywhere, comparable panels on one zero-based axis,
numeric legend order, proxy results labelled, L0 panel only where L0 varies."""


import pytest
from matplotlib.colors import to_hex

from probsae.experiments import plots
from probsae.saes.style import colour
from probsae.interp.calibration import plot_calibration
from probsae.runs.plot import plot_training


def _line_colours(ax) -> dict[str, str]:
    return {l.get_label(): to_hex(l.get_color()) for l in ax.get_lines() if not l.get_label().startswith("_")}


def test_alive_panels_share_one_zero_based_axis(tmp_path, figures):
    panels = {4: {"topk": [(0, 1536), (1e5, 500)], "prob_topk": [(0, 1536), (1e5, 1400)]},
              32: {"topk": [(0, 1536), (1e5, 1507)], "prob_topk": [(0, 1536), (1e5, 1536)]}}
    plots.alive_curves(panels, 1536, tmp_path / "alive.png", "alive")
    axes = figures[-1].axes
    assert [ax.get_ylim() for ax in axes] == [(0, 1536 * 1.05)] * 2
    assert _line_colours(axes[0])["TopK"] == colour("topk").lower()
    assert _line_colours(axes[0])["Probabilistic TopK"] == colour("prob_topk").lower()


def test_alive_variants_keep_their_architecture_colour_in_distinct_line_styles(tmp_path, figures):
    """A variant identical to its architecture (e.g. score=stable) is drawn over it: it must not hide it."""
    same = [(0, 6144), (1e5, 1400)]
    panels = {8: {"Probabilistic TopK": same, "Probabilistic TopK (score=stable)": same,
                  "Probabilistic TopK (score=logit)": [(0, 6144), (1e5, 2000)], "TopK": [(0, 6144), (1e5, 5000)]}}
    plots.alive_curves(panels, 6144, tmp_path / "alive.png", "alive")
    lines = {l.get_label(): l for l in figures[-1].axes[0].get_lines() if not l.get_label().startswith("_")}
    prob = [lines[n] for n in ("Probabilistic TopK", "Probabilistic TopK (score=logit)", "Probabilistic TopK (score=stable)")]
    assert {to_hex(l.get_color()) for l in prob} == {colour("prob_topk").lower()}
    assert len({l.get_linestyle() for l in prob}) == 3 and prob[0].get_linestyle() == "-"
    assert lines["TopK"].get_linestyle() == "-"


def test_training_curves_legend_is_numeric_and_coloured_by_architecture(tmp_path, figures):
    pts = [(0, 0.1), (1, 0.5)]
    curves = {("topk", "K=16"): pts, ("prob_topk", "K=4"): pts, ("topk", "K=4"): pts, ("topk", "K=8"): pts,
              ("prob_topk", "K=32"): pts}
    plots.training_curves(curves, tmp_path / "t.png", "t", "ev")
    labels = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert labels == ["TopK K=4", "TopK K=8", "TopK K=16", "Probabilistic TopK K=4", "Probabilistic TopK K=32"]


def test_figure5_uses_the_architecture_colours_a_chance_line_and_says_proxy(tmp_path, figures):
    def row(lab, arch, scorer, source):
        b = [{"bucket": i, "center_pct": 10 + 20 * i, "mean": 0.5 + 0.05 * i, "ci_low": 0.45 + 0.05 * i,
              "ci_high": 0.55 + 0.05 * i} for i in range(5)]
        return {"label": lab, "architecture": arch, "scorer": scorer, "explanation_source": source,
                "buckets": b, "pearson_r": 0.4}
    plot_calibration([row("A", "topk", "embedding", "top-tokens"), row("B", "prob_topk", "embedding", "top-tokens")],
                     tmp_path / "f5.png")
    ax = figures[-1].axes[0]
    assert "offline proxy" in ax.get_title() and "proxy" in ax.get_ylabel().lower()
    assert any(l.get_label().startswith("chance") and l.get_ydata()[0] == 0.5 for l in ax.get_lines())
    handles, labels = ax.get_legend_handles_labels()
    got = {lab: to_hex(h.lines[0].get_color()) for h, lab in zip(handles, labels) if hasattr(h, "lines")}
    assert got["A (r = 0.400)"] == colour("topk").lower() and got["B (r = 0.400)"] == colour("prob_topk").lower()
    plot_calibration([row("C", "prob_topk", "detection", "llm")], tmp_path / "f5b.png")
    assert "proxy" not in figures[-1].axes[0].get_title()


def test_training_plot_drops_a_flat_l0_and_shows_the_short_window_alive_count(tmp_path, figures):
    recs = [{"step": s, "tokens": s * 1000, "loss": 1 / s, "explained_variance": 0.1 * s, "l0": 8.0,
             "alive": 64, "alive_recent": 64 - s, "alive_window": 2000, "beta": 1.0 / s} for s in range(1, 6)]
    plot_training(recs, tmp_path / "training.png", "prob_topk k=8", 64, architecture="prob_topk", heldout_alive=50)
    fig = figures[-1]
    titles = [ax.get_title() for ax in fig.axes]
    assert not any(t.startswith("L0") for t in titles) and "L0 = 8 at every step" in fig._suptitle.get_text()
    alive = fig.axes[titles.index("alive latents")]
    assert alive.get_ylim()[0] == 0 and any("last 2k" in l.get_label() for l in alive.get_lines())
    assert to_hex(alive.get_lines()[0].get_color()) == colour("prob_topk").lower()
    recs[2]["l0"] = 9.5                                              # L0 that varies: its panel is back
    plot_training(recs, tmp_path / "training.png", "relu", 64, architecture="relu", final=False)
    assert any(ax.get_title().startswith("L0") for ax in figures[-1].axes)
    assert "in progress" in figures[-1]._suptitle.get_text()


def test_beta_lines_draw_the_baseline_as_a_dashed_line_in_the_k_colour(tmp_path, figures):
    lines = {"K=8, 3M": [(0.5, 0.27, 0.26, 0.28), (5.0, 0.30, 0.29, 0.31)],
             "K=32, 3M": [(0.5, 0.17, None, None), (5.0, 0.18, None, None)]}
    plots.beta_lines(lines, tmp_path / "t.png", "t", references={"K=8, 3M": ("TopK, K=8, 3M", 0.25)})
    ax = figures[-1].axes[0]
    ref = [l for l in ax.get_lines() if l.get_label() == "TopK, K=8, 3M"]
    assert len(ref) == 1 and ref[0].get_linestyle() == "--"
    assert list(ref[0].get_ydata()) == [0.25, 0.25]
    curve = next(c for c in ax.containers if c.get_label() == "K=8, 3M")
    assert to_hex(ref[0].get_color()) == to_hex(curve.lines[0].get_color())
    assert not any(l.get_label() == "TopK, K=32, 3M" for l in ax.get_lines())


def test_gap_panels_draw_a_dashed_zero_line_and_order_k_numerically(tmp_path, figures):
    fvu = {"K=16": [(3e5, 6.4, 6.2, 6.6), (3e6, 24.5, 23.4, 25.6)],
           "K=4": [(3e5, 10.8, 10.5, 11.1), (3e6, 6.9, 5.2, 8.6)]}
    alive = {"K=4": [(3e5, -1943.0, -2002.0, -1884.0), (3e6, 2451.0, None, None)]}
    plots.gap_panels({"FVU (%)": fvu, "alive": alive}, tmp_path / "g.png", "gap")
    left, right = figures[-1].axes
    zero = [l for l in left.get_lines() if list(l.get_ydata()) == [0.0, 0.0]]
    assert len(zero) == 1 and zero[0].get_linestyle() == "--"
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["K=4", "K=16"]
    k16 = next(c for c in left.containers if c.get_label() == "K=16")
    assert list(k16.lines[0].get_ydata()) == [6.4, 24.5]
    assert right.get_ylabel() == "alive" and left.get_xscale() == "log"


def test_fvu_lines_legend_is_by_family_then_numeric_k(tmp_path, figures):
    pts = [(3e5, 0.5, 0.49, 0.51), (3e6, 0.3, 0.29, 0.31)]
    series = {f"{fam} K={k}": pts for fam in ("TopK", "Probabilistic TopK") for k in (16, 4, 32, 8)}
    plots.fvu_lines(series, tmp_path / "f.png", "f")
    texts = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert texts == [f"{fam} K={k}" for fam in ("Probabilistic TopK", "TopK") for k in (4, 8, 16, 32)]

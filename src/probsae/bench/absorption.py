"""Feature absorption on the first-letter task, as SAEBench v0.6 computes it (docs/BENCH.md).

1. A linear probe for each first letter (one-vs-rest logistic regression) on the model's
   activations at the word token: the ground truth "this word starts with S".
2. The letter's *main latents*: k-sparse probes on the SAE's codes (the k latents an L1-regularised
   probe weights most, refit without L1) for k = 1 … ``max_k``; k grows while the test F1 rises by
   more than ``f1_jump`` (feature splitting), and the last k's latents are the main ones.
3. For each test word of the letter that the probe finds (probe true positives), the share of the
   activation's projection on the probe that latents other than the main ones carry instead
   (absorption fraction), and whether one latent carries it while the main ones are silent (full
   absorption).
4. Per letter: the mean absorption fraction and the full-absorption rate over its probe true
   positives; the headline ``mean_absorption_fraction_score`` and ``mean_full_absorption_score``
   average them over the letters whose probe F1 exceeds ``min_probe_f1``.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..stats import mean_ci
from ..validators import number, whole
from .first_letter import LETTERS, FirstLetterConfig, FirstLetterData, first_letter_data, not_causal, read_words

#: A latent with a code below this is silent (SAEBench's EPS of the full-absorption test).
SILENT = 1e-8


@dataclass
class AbsorptionConfig:
    """The probes and thresholds of the absorption metric (defaults: SAEBench v0.6)."""

    probe_epochs: int = 50
    """Epochs of the letter probe (Adam, learning rate decayed exponentially to 1e-5)."""
    probe_lr: float = 0.01
    """Initial learning rate of the letter probe and of the L1 probe on the codes."""
    probe_batch_size: int = 64
    """Batch size of the letter probe."""
    probe_weight_decay: float = 1e-4
    """Adam weight decay of the letter probe."""
    sparse_l1: float = 0.01
    """L1 coefficient of the probe on the SAE codes that ranks the latents of each letter."""
    sparse_epochs: int = 50
    """Epochs of that L1 probe."""
    sparse_batch_size: int = 256
    """Batch size of that L1 probe (SAEBench: 4096, for ten times more words; docs/BENCH.md)."""
    max_k: int = 10
    """Largest number of main latents per letter (k-sparse probes for k = 1 … max_k)."""
    f1_jump: float = 0.03
    """k grows while the k-sparse probe's test F1 rises by more than this (feature splitting)."""
    min_probe_f1: float = 0.6
    """Letters whose probe has a test F1 at most this are left out."""
    min_letters: int = 20
    """Fewer letters than this above min_probe_f1: the metric is skipped."""
    full_cos: float = 0.025
    """Full absorption: the top latent's decoder has at least this cosine with the probe."""
    fraction_cos: float = 0.1
    """Absorption fraction: a latent can absorb when its decoder has at least this cosine with the probe."""
    proportion: float = 0.4
    """The absorbing latents must carry at least this share of the activation's probe projection."""
    max_absorbers: int = 3
    """Absorption fraction: at most this many absorbing latents per word."""
    seed: int = 42
    """Seed of the probes' initialisation and batch order."""

    def __post_init__(self) -> None:
        _check(self)


def _check(cfg: AbsorptionConfig) -> None:
    """ConfigError naming the first field out of range."""
    for name in ("probe_epochs", "probe_batch_size", "sparse_epochs", "sparse_batch_size", "max_k",
                 "min_letters", "max_absorbers"):
        whole(name, getattr(cfg, name), 1)
    whole("seed", cfg.seed, 0)
    for name in ("probe_lr", "probe_weight_decay", "sparse_l1", "f1_jump", "min_probe_f1", "full_cos",
                 "fraction_cos", "proportion"):
        number(name, getattr(cfg, name))
    if cfg.probe_lr <= 1e-5:
        raise ConfigError(f"probe_lr must be > 1e-5 (the final learning rate), got {cfg.probe_lr!r}")


# ---- probes ------------------------------------------------------------------------------------

Rows = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
"""Training inputs: a dense (N, d) tensor, or sparse codes as (values, indices), each (N, K)."""


def _sparse(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense codes (N, L) as (values, indices) of each row's nonzero entries, padded with zeros."""
    k = max(int((codes != 0).sum(1).max()), 1)
    idx = codes.abs().topk(k, dim=1).indices
    return codes.gather(1, idx), idx


def _logits(x: Rows, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if isinstance(x, tuple):
        values, idx = x
        return (values.unsqueeze(-1) * weight.T[idx]).sum(1) + bias
    return x @ weight.T + bias


def _train_ovr(x: Rows, dim: int, y: torch.Tensor, epochs: int, lr: float, batch_size: int,
               weight_decay: float, seed: int, l1: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest logistic probes (SAEBench's ``train_multi_probe``) on ``dim``-wide rows ``x``:
    BCE with positives weighted by negatives/positives per column, Adam, learning rate decayed
    exponentially from ``lr`` to 1e-5 over the epochs, plus ``l1`` × the mean over probes of Σ|w|.
    ``y`` (N, P) in {0, 1}. Returns weight (P, dim) and bias (P,)."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(dim)
    weight = (torch.rand(y.shape[1], dim, generator=gen) * 2 - 1).mul_(bound).requires_grad_()
    bias = (torch.rand(y.shape[1], generator=gen) * 2 - 1).mul_(bound).requires_grad_()
    pos = y.sum(0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(len(y) - pos) / pos)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=math.exp(math.log(1e-5 / lr) / epochs))
    for _ in range(epochs):
        for b in torch.randperm(len(y), generator=gen).split(batch_size):
            opt.zero_grad()
            rows = (x[0][b], x[1][b]) if isinstance(x, tuple) else x[b]
            loss = loss_fn(_logits(rows, weight, bias), y[b])
            if l1:
                loss = loss + l1 * weight.abs().sum(-1).mean()
            loss.backward()
            opt.step()
        sched.step()
    return weight.detach(), bias.detach()


def _fit_balanced_lr(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P independent L2 logistic regressions (what scikit-learn's ``LogisticRegression(C=1,
    class_weight='balanced')`` fits): ``x`` (P, N, k), ``y`` (P, N) in {0, 1}; each example weighted
    N / (2 · its class's count), fitted by :func:`probsae.evaluation.probing.fit_logistic`.
    Returns weight (P, k) and bias (P,)."""
    from ..evaluation.probing import fit_logistic

    n = y.shape[1]
    ws, bs = [], []
    for xp, yp in zip(x, y):
        n_pos = yp.sum()
        weight = torch.where(yp > 0, n / (2 * n_pos.clamp_min(1)), n / (2 * (n - n_pos).clamp_min(1)))
        w, b = fit_logistic(xp, yp, c=1.0, sample_weight=weight)
        ws.append(w)
        bs.append(b)
    return torch.stack(ws).float(), torch.stack(bs).float()


def f1_scores(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per column F1 of boolean predictions (N, P) against truth (N, P); 0 where undefined."""
    tp = (pred & truth).sum(0).double()
    denom = pred.sum(0).double() + truth.sum(0).double()
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))


@dataclass
class LetterProbe:
    """The ground-truth probes: one logistic probe per letter present in the training words."""

    letters: list[int]
    """The probes' letters (indices 0–25), one per row of weight."""
    weight: torch.Tensor
    """(P, d) probe weights."""
    bias: torch.Tensor
    """(P,) probe biases."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, P) probe scores; > 0 means "starts with that letter"."""
        return _logits(x.float(), self.weight, self.bias)


def _one_hot(y: np.ndarray, letters: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.asarray(y)[:, None] == np.asarray(letters)[None, :]).float()


def train_letter_probe(x: torch.Tensor, y: np.ndarray, cfg: AbsorptionConfig | None = None) -> LetterProbe:
    """The letter probes on activations ``x`` (N, d) with letters ``y`` (N,) (SAEBench's
    ``train_linear_probe_for_task``)."""
    cfg = cfg or AbsorptionConfig()
    letters = sorted(int(v) for v in np.unique(y))
    w, b = _train_ovr(x.float(), x.shape[1], _one_hot(y, letters), cfg.probe_epochs, cfg.probe_lr,
                      cfg.probe_batch_size, cfg.probe_weight_decay, cfg.seed)
    return LetterProbe(letters, w, b)


# ---- main latents ------------------------------------------------------------------------------

def main_latents(codes_train: torch.Tensor, y_train: np.ndarray, codes_test: torch.Tensor, y_test: np.ndarray,
                 letters: list[int], cfg: AbsorptionConfig | None = None) -> dict[int, list[int]]:
    """Each letter's main latents (SAEBench's k-sparse probing and feature-splitting rule): rank the
    latents by an L1 probe's weight, refit a balanced logistic regression on the top k codes for
    k = 1 … max_k, and keep the top k while the test F1 (score > 0) rises by more than f1_jump."""
    cfg = cfg or AbsorptionConfig()
    w, _ = _train_ovr(_sparse(codes_train.float()), codes_train.shape[1], _one_hot(y_train, letters),
                      cfg.sparse_epochs, cfg.probe_lr, cfg.sparse_batch_size, 1e-6, cfg.seed, l1=cfg.sparse_l1)
    truth_tr, truth_te = _one_hot(y_train, letters), _one_hot(y_test, letters).bool()
    best = torch.full((len(letters),), -100.0, dtype=torch.float64)
    chosen: dict[int, list[int]] = {l: [] for l in letters}
    growing = torch.ones(len(letters), dtype=torch.bool)
    for k in range(1, min(cfg.max_k, codes_train.shape[1]) + 1):
        ids = w.topk(k, dim=1).indices  # (P, k): the largest (not |·|) weights, latents that predict the letter
        kw, kb = _fit_balanced_lr(codes_train.T[ids].transpose(1, 2), truth_tr.T)
        scores = torch.einsum("pnk,pk->np", codes_test.T[ids].transpose(1, 2).float(), kw) + kb
        f1 = f1_scores(scores > 0, truth_te)
        growing &= f1 > best + cfg.f1_jump
        best = torch.where(growing, f1, best)
        for p in growing.nonzero().flatten().tolist():
            chosen[letters[p]] = ids[p].tolist()
        if not growing.any():
            break
    return chosen


# ---- absorption --------------------------------------------------------------------------------

def word_absorption(act_proj: torch.Tensor, codes: torch.Tensor, latent_proj: torch.Tensor, cos: torch.Tensor,
                    main: list[int], cfg: AbsorptionConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Absorption of n words of one letter (SAEBench's ``FeatureAbsorptionCalculator``).

    ``act_proj`` (n,): each activation's projection on the unit probe direction; ``codes`` (n, L):
    the SAE codes; ``latent_proj`` (n, L): each latent's contribution to the reconstruction along the
    probe direction; ``cos`` (L,): cosine of each decoder row with the probe; ``main``: the letter's
    main latents. Returns the absorption fraction (n,) and full absorption (n,) bool."""
    cfg = cfg or AbsorptionConfig()
    main_t = torch.tensor(main, dtype=torch.long)
    main_proj = latent_proj[:, main_t].sum(1)
    can = (cos >= cfg.fraction_cos)
    can[main_t] = False
    cand = torch.where(can[None, :] & (latent_proj > 0), latent_proj, torch.zeros_like(latent_proj))
    absorbed = cand.topk(min(cfg.max_absorbers, cand.shape[1]), dim=1).values.sum(1)
    positive = act_proj > 0
    share = torch.where(positive, absorbed / act_proj.where(positive, torch.ones_like(act_proj)), 0.0)
    none = ~positive | (main_proj >= act_proj) | (share < cfg.proportion)
    part = torch.minimum(absorbed, act_proj - main_proj)
    frac = torch.where(main_proj <= 0, torch.ones_like(part), (part / (part + main_proj)).clamp(0, 1))
    frac = torch.where(none, torch.zeros_like(frac), frac)
    top_val, top_id = latent_proj.max(1)
    silent = (codes[:, main_t] < SILENT).all(1) if main else torch.ones_like(positive)
    full = silent & (cos[top_id] >= cfg.full_cos) & positive & (top_val >= cfg.proportion * act_proj)
    return frac, full


def _code_scale(sae, x: torch.Tensor) -> torch.Tensor:
    """(N,) the raw-activation length of one unit of code along a decoder row, per token (the SAE's
    input normalisation undone: ‖x − mean‖ for 'unit', 1/scale for 'scalar', 1 for 'none')."""
    _, stats = sae.normalizer(x)
    e = torch.zeros(x.shape[0], sae.d_in, dtype=x.dtype, device=x.device)
    e[:, 0] = 1
    return (sae.denormalize(e, stats) - sae.denormalize(torch.zeros_like(e), stats))[:, 0]


@torch.no_grad()
def _encode(sae, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([sae.encode(x[i:i + batch]).float().cpu() for i in range(0, len(x), batch)])


def _letter_rows(letter: int, probe_row: int, probe: LetterProbe, x: torch.Tensor, y: np.ndarray,
                 logits: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, sae, main: list[int],
                 cfg: AbsorptionConfig) -> dict:
    """The absorption of one letter over its probe true positives in the test words."""
    direction = probe.weight[probe_row] / probe.weight[probe_row].norm()
    w_dec = sae.W_dec.detach().float().cpu()
    along = w_dec @ direction
    cos = along / w_dec.norm(dim=1).clamp_min(1e-12)
    tp = torch.from_numpy(y == letter) & (logits[:, probe_row] > 0)
    frac, full = word_absorption(x[tp].float() @ direction, codes[tp], codes[tp] * scale[tp, None] * along,
                                 cos, main, cfg)
    n = int(tp.sum())
    return {"letter": LETTERS[letter], "mean_absorption_fraction": float(frac.sum()) / n if n else None,
            "full_absorption_rate": float(full.sum()) / n if n else None, "num_full_absorption": int(full.sum()),
            "num_probe_true_positives": n, "num_split_features": len(main), "main_latents": main}


def _mean_std(values: list[float]) -> dict:
    m, lo, hi = mean_ci(values)
    return {"mean": m, "std": statistics.stdev(values) if len(values) > 1 else None, "ci95": [lo, hi]}


def absorption_scores(sae, x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray,
                      cfg: AbsorptionConfig | None = None, probe: LetterProbe | None = None) -> dict:
    """The absorption metric of ``sae`` on activations with first-letter labels (0–25): the letter
    probe (trained on the training activations unless given; train it once per hook point with
    :func:`train_letter_probe`), main latents, per-letter and mean scores, as a JSON-able dict
    (``skipped`` says why when fewer than ``min_letters`` letters have a good probe)."""
    cfg = cfg or AbsorptionConfig()
    probe = probe or train_letter_probe(x_train, y_train, cfg)
    logits = probe.logits(x_test)
    probe_f1 = f1_scores(logits > 0, _one_hot(y_test, probe.letters).bool())
    good = [(row, l) for row, l in enumerate(probe.letters) if probe_f1[row] > cfg.min_probe_f1]
    out: dict = {"probe_f1": {LETTERS[l]: float(f) for l, f in zip(probe.letters, probe_f1)},
                 "n_letters": len(good)}
    if len(good) < cfg.min_letters:
        out["skipped"] = (f"only {len(good)} letters have a probe with test F1 > {cfg.min_probe_f1} (needs "
                          f"{cfg.min_letters}): too few first-letter features in the model to evaluate absorption")
        return out
    sae = sae.eval()
    codes_train, codes_test = _encode(sae, x_train), _encode(sae, x_test)
    mains = main_latents(codes_train, y_train, codes_test, y_test, probe.letters, cfg)
    with torch.no_grad():
        scale = _code_scale(sae, x_test.to(sae.W_dec.device, sae.W_dec.dtype)).float().cpu()
        rows = [_letter_rows(l, row, probe, x_test, y_test, logits, codes_test, scale, sae, mains[l], cfg)
                for row, l in good]
    rows = [r for r in rows if r["num_probe_true_positives"]]
    fr = _mean_std([r["mean_absorption_fraction"] for r in rows])
    full = _mean_std([r["full_absorption_rate"] for r in rows])
    split = _mean_std([r["num_split_features"] for r in rows])
    out.update({"mean_absorption_fraction_score": fr["mean"], "mean_full_absorption_score": full["mean"],
                "mean_num_split_features": split["mean"], "std_dev_absorption_fraction_score": fr["std"],
                "std_dev_full_absorption_score": full["std"], "std_dev_num_split_features": split["std"],
                "absorption_fraction_ci95": fr["ci95"], "full_absorption_ci95": full["ci95"], "letters": rows})
    return out


def run_absorption(handle, saes: dict, words: list[str] | None = None, task: FirstLetterConfig | None = None,
                   cfg: AbsorptionConfig | None = None, progress: bool = False) -> dict:
    """The absorption metric of several SAEs of one model: ``saes`` maps a name to an SAE (its hook
    point from its metadata); the words' activations are read once for all hook points and the
    letter probe trained once per hook point. ``words``: a word list (default: ``task.words`` or
    /usr/share/dict/words). Returns ``{"task": {...}, "saes": {name: {...}}}`` with the seconds each
    stage took; when the model cannot do the task (not causal, or accuracy below
    ``task.min_accuracy``) every entry says ``skipped``."""
    task = task or FirstLetterConfig()
    cfg = cfg or AbsorptionConfig()
    reason = not_causal(handle)
    if reason:
        return {"task": {"skipped": reason}, "saes": {n: {"skipped": reason} for n in saes}}
    hooks = list(dict.fromkeys(s.metadata.hook_name for s in saes.values()))
    start = time.perf_counter()
    data = first_letter_data(handle, hooks, words if words is not None else read_words(task.words), task,
                             progress)
    summary = data.summary() | {"min_accuracy": task.min_accuracy, "seconds": time.perf_counter() - start}
    reason = _task_skip(data, task)
    if reason:
        return {"task": summary | {"skipped": reason}, "saes": {n: {"skipped": reason} for n in saes}}
    return {"task": summary, "saes": _per_hook(data, saes, cfg, summary.setdefault("probe_seconds", {}))}


def _per_hook(data: FirstLetterData, saes: dict, cfg: AbsorptionConfig, probe_seconds: dict) -> dict:
    """Each SAE's scores, the letter probe trained once per hook point."""
    out: dict = {}
    tr, te = torch.from_numpy(data.train), torch.from_numpy(~data.train)
    y_tr, y_te = data.letters[data.train], data.letters[~data.train]
    for hook, x in data.acts.items():
        start = time.perf_counter()
        probe = train_letter_probe(x[tr], y_tr, cfg)
        probe_seconds[hook] = time.perf_counter() - start
        for name, sae in saes.items():
            if sae.metadata.hook_name != hook:
                continue
            if sae.predicts_target:
                out[name] = {"skipped": "a transcoder predicts another activation; absorption needs an autoencoder"}
                continue
            start = time.perf_counter()
            out[name] = absorption_scores(sae, x[tr], y_tr, x[te], y_te, cfg, probe)
            out[name] |= {"hook": hook, "seconds": time.perf_counter() - start}
    return out


def _task_skip(data: FirstLetterData, task: FirstLetterConfig) -> str | None:
    """Why the model's first-letter accuracy rules the metric out, or None."""
    if data.accuracy is None:
        return f"the model's first-letter accuracy could not be measured: {data.check_error or 'no test words'}"
    if data.accuracy < task.min_accuracy:
        return (f"the model names the first letter of {data.accuracy:.0%} of {data.checked} test words, below "
                f"min_accuracy {task.min_accuracy:.0%}: it does not solve the task, so absorption is not measured")
    return None


def absorption(ctx) -> dict[str, dict]:
    """The bench metric (``probsae.bench.context.Metric``): :func:`run_absorption` for every SAE
    of the hook point, the task summary (words, the model's accuracy, seconds) in each result."""
    from ..errors import FileIOError
    from .context import not_run

    task = FirstLetterConfig(words=ctx.settings.words, max_words=ctx.settings.absorption_words)
    try:
        words = read_words(task.words)
    except FileIOError as e:
        if task.words:   # the user's --words: their mistake, said at once
            raise
        return {m.name: not_run(str(e)) for m in ctx.members}
    res = run_absorption(ctx.handle, {m.name: m.sae for m in ctx.members}, words, task=task, progress=True)
    out = {}
    for name, r in res["saes"].items():
        out[name] = not_run(r["skipped"]) | {"task": res["task"]} if "skipped" in r else r | {"task": res["task"]}
    return out

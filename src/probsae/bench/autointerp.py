"""The autointerp metric of ``probsae bench``: the existing detection scoring of LLM explanations
(``probsae.interp.pipeline.run_autointerp``, the paper's Table 2 method) for every SAE of a hook
point, with the judge ``--autointerp-llm`` names (docs/BENCH.md). Everything it writes (latent
caches, explanations, scores, the LLM reply cache, the server log) goes under the bench's
``--out``, never into the runs."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .context import HookContext, folder_name, not_run

NOT_CONFIGURED = ("no judge configured: pass --autointerp-llm local:NAME (a model served on 127.0.0.1) or "
                  "--autointerp-llm env (the PROBSAE_LLM_* endpoint), or run probsae autointerp RUN")


def autointerp(ctx: HookContext) -> dict[str, dict[str, Any]]:
    """Table-2 row (mean detection score per activation bucket with CIs, Pearson r, failures) of
    each member; "not run" without a judge."""
    from ..interp.cost import window_count
    from ..interp.pipeline import AutoInterpConfig, resolve_run, run_autointerp

    s = ctx.settings
    if not s.autointerp_llm:
        return {m.name: not_run(NOT_CONFIGURED) for m in ctx.members}
    work = (ctx.out or Path("bench")) / "autointerp"
    n_windows, budget = window_count(None)   # the default count, capped to the time budget
    rows = {}
    with _judge(s.autointerp_llm, work, s.device) as llm:
        llm.cache_dir = str(work / "llm_cache")
        for m in ctx.members:
            cfg = AutoInterpConfig(scorer="detection", explainer="llm", n_latents=s.autointerp_latents, seed=s.seed,
                                   n_windows=n_windows, time_budget_s=budget, device=s.device,
                                   cache_dir=str(work / folder_name(m.name) / "latent_cache"), llm=llm)
            rows[m.name] = run_autointerp(resolve_run(m.run_dir), cfg, handle=ctx.handle,
                                          out=work / folder_name(m.name) / "results")
    return rows


def _judge(spec: str, work: Path, device: str):
    """A context giving the judge's LLMConfig: a local server started for the metric (stopped after
    it), or the environment's endpoint."""
    from contextlib import contextmanager

    from ..interp.llm_client import LLMConfig

    if spec == "env":
        return nullcontext(LLMConfig.from_env())

    @contextmanager
    def served():
        from ..interp.local_llm import LOCAL_TIMEOUT, LocalLLMConfig, LocalLLMServer, parse_llm_spec

        work.mkdir(parents=True, exist_ok=True)
        cfg = LocalLLMConfig(parse_llm_spec(spec), log_path=str(work / "serve.log"), device=device)
        with LocalLLMServer(cfg) as srv:
            yield srv.llm_config(LLMConfig(timeout=LOCAL_TIMEOUT))
    return served()


"""Issue 25: following ``--k`` from the command line to ``kernels.select_topk`` passes through at
most 8 files, and they are the ones docs/ARCHITECTURE.md lists.

The value is followed at run time: a profiler looks at the local variables of every probsae frame
(on each call and return) while ``probsae train --k 263`` is parsed into run specs, the SAE is
built and trained for one step, and records the files where a local holds the value (the string
"263" or the integer 263, alone or in a plain dict/list such as a hyperparameter mapping), and
the callers that passed it as an argument. Frames that only carry the typed config or the SAE
holding it do not count: that is the design (the runner and the trainer never look at k)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from probsae.cli.main import build_parser
from probsae.cli.train import specs_from_args
from probsae.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "probsae"
K = 263  # a value no other setting or size of this run takes
#: Where the value leaves the path to the kernel: written into config.json when the SAE is saved.
SIDE_BRANCHES = {"_config_record"}


def documented_path() -> list[str]:
    """The files of the table under "Following `--k`" in docs/ARCHITECTURE.md, in order."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Following `--k`", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| \d+ \| `([^`]+)` \|", section, flags=re.M)


def files_holding_k() -> set[str]:
    seen: set[str] = set()

    def raw(value) -> bool:
        return (type(value) is int and value == K) or (type(value) is str and value == str(K))

    def holds(value) -> bool:  # the value, or a plain container of it (a hyperparameter mapping, a comma list)
        if isinstance(value, dict):
            return any(raw(v) or (isinstance(v, (list, tuple)) and any(map(raw, v))) for v in value.values())
        return raw(value) or (isinstance(value, (list, tuple)) and any(map(raw, value)))

    def note(frame) -> None:
        path = frame.f_code.co_filename if frame is not None else ""
        if path.startswith(str(SRC)) and frame.f_code.co_name not in SIDE_BRANCHES:
            seen.add(str(Path(path).relative_to(SRC)))

    def profile(frame, event, arg):
        if event not in ("call", "return") or not any(holds(v) for v in frame.f_locals.values()):
            return
        note(frame)
        if event == "call":  # the caller passed it (e.g. ``select_topk(..., self.cfg.k, ...)``)
            note(frame.f_back)

    run_once()  # imports and lazy set-up first, so that only the path itself is profiled
    sys.setprofile(profile)
    try:
        sae = run_once()
    finally:
        sys.setprofile(None)
    assert sae.cfg.k == K
    return seen


def run_once():
    """`probsae train --k K` parsed into its run spec, the SAE built and trained one step."""
    args = build_parser().parse_args(["train", "--arch", "topk", "--k", str(K), "--d-sae", "512", "--model", "m",
                                      "--hook", "resid_pre.1", "--corpus", "c.txt", "--no-progress"])
    [(_, spec)] = specs_from_args(args)
    sae = spec.build_sae(8)
    train([sae], torch.randn(16, 8), TrainConfig(steps=1, batch_size=16, progress=False, log_every=1,
                                                 checkpoint_every=0))
    return sae


def test_k_passes_through_the_documented_files_only():
    doc = documented_path()
    assert len(doc) <= 8, doc
    seen = files_holding_k()
    # past select_topk the kernels' own helpers take k as an argument: the path ends at the entry
    on_path = {f for f in seen if not (f.startswith("kernels/") and f != "kernels/select.py")}
    assert on_path == set(doc), (sorted(on_path), doc)

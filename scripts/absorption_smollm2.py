"""Feature absorption (first-letter task, SAEBench v0.6's definition) of SmolLM2 SAEs, with the
model's accuracy on the task and the wall time of each stage.

    nice -n 10 python scripts/absorption_smollm2.py /work/runs/smollm2-cpu/runs/topk-k=8 \\
        /work/runs/smollm2-cpu/runs/prob_topk-k=8 --out /tmp/absorption.json

The runs are only read. The words' activations are read once for every SAE of a hook point and the
letter probe is trained once per hook point; each SAE then costs its encode, its k-sparse probes and
the absorption scores. Also reports the model's accuracy on 52 common words (the issue's check).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: 52 common words, two per letter (x: 'xray' and 'xylophone' are not single tokens; 'x' words are rare).
COMMON = ("apple animal ball bread cat cloud dog door egg earth fish fire green girl house hand ice idea jump "
          "juice king kite lion lamp moon milk nose night orange ocean paper pig queen quiet river rain sun "
          "snake tiger tree umbrella under voice violin water window box fox yellow year zebra zoo").split()

RUNS = "/work/runs/smollm2-cpu/runs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", default=[f"{RUNS}/topk-k=8", f"{RUNS}/prob_topk-k=8"])
    p.add_argument("--max-words", type=int, default=6000)
    p.add_argument("--accuracy-words", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()

    import torch

    from probsae.bench.absorption import run_absorption
    from probsae.bench.first_letter import FirstLetterConfig, filter_words, first_letter_accuracy, read_words
    from probsae.data.models import load_model
    from probsae.saes import load_sae

    torch.set_num_threads(args.threads)
    t0 = time.time()
    saes = {Path(r).name: load_sae(r).eval() for r in args.runs}
    handle = load_model("smollm2")
    load = time.time() - t0
    words = read_words()
    out = run_absorption(handle, saes, words, FirstLetterConfig(max_words=args.max_words,
                                                                accuracy_words=args.accuracy_words), progress=True)
    task = out["task"]
    t = time.time()
    kept = set(filter_words(COMMON, handle.tokenizer))
    out["common_words"] = first_letter_accuracy(handle, [w for w in COMMON if w in kept], task["examples"])
    common_s = time.time() - t
    print(f"words: {len(filter_words(words, handle.tokenizer))} filtered of {len(words)}; asked {task['n_words']}")
    print(f"model accuracy on {task['accuracy_words']} test words: {task['accuracy']:.3f}; on "
          f"{out['common_words']['n']} common words: {out['common_words']['accuracy']:.3f} "
          f"(wrong: {', '.join(out['common_words']['wrong'])})")
    for name, r in out["saes"].items():
        if "skipped" in r:
            print(f"{name}: skipped: {r['skipped']}")
            continue
        lo, hi = r["absorption_fraction_ci95"]
        flo, fhi = r["full_absorption_ci95"]
        print(f"{name}: absorption fraction {r['mean_absorption_fraction_score']:.4f} (95% CI {lo:.4f}–{hi:.4f}), "
              f"full absorption {r['mean_full_absorption_score']:.4f} (95% CI {flo:.4f}–{fhi:.4f}), "
              f"split features {r['mean_num_split_features']:.2f}, letters {r['n_letters']}, {r['seconds']:.0f} s")
        cells = (f"{l['letter']}:{l['mean_absorption_fraction']:.2f}/{l['full_absorption_rate']:.2f}"
                 f"/{l['num_split_features']}" for l in r["letters"])
        print("   letter:fraction/full/main latents  " + " ".join(cells))
    _paired(out["saes"])
    first = next(iter(out["saes"].values()))
    if "probe_f1" in first:
        print("probe F1: " + " ".join(f"{k}:{v:.2f}" for k, v in first["probe_f1"].items()))
    probes = ", ".join(f"{h} {s:.0f}" for h, s in task.get("probe_seconds", {}).items())
    print(f"wall time (s): load {load:.0f}, words' activations + model check {task.get('seconds', 0):.0f}, "
          f"letter probe {probes}, common-word check {common_s:.0f}; total {time.time() - t0:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


def _paired(results: dict) -> None:
    """Each SAE against the first: the paired difference over the letters both score, with a 95 % CI."""
    from probsae.stats import mean_ci

    scored = {n: {l["letter"]: l for l in r["letters"]} for n, r in results.items() if "letters" in r}
    if len(scored) < 2:
        return
    base_name, base = next(iter(scored.items()))
    for name, rows in list(scored.items())[1:]:
        for key in ("mean_absorption_fraction", "full_absorption_rate"):
            m, lo, hi = mean_ci([rows[c][key] - base[c][key] for c in base if c in rows])
            print(f"{name} − {base_name}, {key} (paired over letters): {m:+.4f} (95% CI {lo:+.4f} to {hi:+.4f})")


if __name__ == "__main__":
    main()

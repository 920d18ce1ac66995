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

    from probsae.bench.absorption import AbsorptionConfig, absorption_scores, train_letter_probe
    from probsae.bench.first_letter import (FirstLetterConfig, filter_words, first_letter_accuracy,
                                            first_letter_data, read_words)
    from probsae.data.models import load_model
    from probsae.saes import load_sae

    torch.set_num_threads(args.threads)
    t0 = time.time()
    saes = {Path(r).name: load_sae(r).eval() for r in args.runs}
    handle = load_model("smollm2")
    times = {"load": time.time() - t0}

    task = FirstLetterConfig(max_words=args.max_words, accuracy_words=args.accuracy_words)
    t = time.time()
    words = read_words()
    hooks = sorted({s.metadata.hook_name for s in saes.values()})
    data = first_letter_data(handle, hooks, words, task, progress=True)
    times["extract_and_check"] = time.time() - t
    t = time.time()
    common = [w for w in COMMON if w in set(filter_words(COMMON, handle.tokenizer))]
    acc_common = first_letter_accuracy(handle, common, data.examples)
    times["common_check"] = time.time() - t
    print(f"words: {len(filter_words(words, handle.tokenizer))} filtered of {len(words)}; asked {len(data.words)}")
    print(f"model accuracy on {data.checked} test words: {data.accuracy:.3f}; on {acc_common['n']} common "
          f"words: {acc_common['accuracy']:.3f} (wrong: {', '.join(acc_common['wrong'])})")

    cfg = AbsorptionConfig()
    results: dict = {}
    tr, te = torch.from_numpy(data.train), torch.from_numpy(~data.train)
    for hook in hooks:
        x = data.acts[hook]
        t = time.time()
        probe = train_letter_probe(x[tr], data.letters[data.train], cfg)
        times[f"probe {hook}"] = time.time() - t
        for name, sae in saes.items():
            if sae.metadata.hook_name != hook:
                continue
            t = time.time()
            results[name] = absorption_scores(sae, x[tr], data.letters[data.train], x[te], data.letters[~data.train],
                                              cfg, probe)
            times[f"sae {name}"] = time.time() - t
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name}: skipped: {r['skipped']}")
            continue
        print(f"{name}: absorption fraction {r['mean_absorption_fraction_score']:.4f} "
              f"(95% CI {r['absorption_fraction_ci95'][0]:.4f}–{r['absorption_fraction_ci95'][1]:.4f}), "
              f"full absorption {r['mean_full_absorption_score']:.4f} "
              f"(95% CI {r['full_absorption_ci95'][0]:.4f}–{r['full_absorption_ci95'][1]:.4f}), "
              f"split features {r['mean_num_split_features']:.2f}, letters {r['n_letters']}")
        print("   " + " ".join(f"{l['letter']}:{l['mean_absorption_fraction']:.2f}/{l['full_absorption_rate']:.2f}"
                               f"/{l['num_split_features']}" for l in r["letters"]))
    first = next(iter(results.values()))
    print("probe F1: " + " ".join(f"{k}:{v:.2f}" for k, v in first["probe_f1"].items()))
    print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {time.time() - t0:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"task": data.summary(), "common_words": acc_common, "saes": results,
                                              "seconds": times}, indent=1))


if __name__ == "__main__":
    main()

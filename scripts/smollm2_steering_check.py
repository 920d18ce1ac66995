"""Steering on the real SmolLM2 checked against the model itself: the steered next-token logits of
``steered_generate`` against the model's logits with the latent's delta added by a plain forward
pre-hook on the hooked block (c · W_dec[i] · ‖x_t − mean(x_t)‖ at every token but BOS: what
decode(c·e_i) − decode(0) is under 'unit' normalisation). Usage:

    PYTHONPATH=src python scripts/smollm2_steering_check.py /work/runs/smollm2-cpu/runs/prob_topk-k=8 [LATENT] [CODE]
"""

import sys

import torch

from probsae.data.hooks import HookPoint
from probsae.interp.steering import prompt_ids, steered_generate
from probsae.runs.load import load_run

torch.set_num_threads(1)
run = load_run(sys.argv[1])
latent = int(sys.argv[2]) if len(sys.argv) > 2 else 6127
code = float(sys.argv[3]) if len(sys.argv) > 3 else 0.415
prompt = "Once upon a time, there was a"
h, sae = run.model, run.sae
hp = HookPoint.parse(run.hook)
assert hp.kind == "resid_pre" and sae.normalizer.mode == "unit", "the hand-written hook covers resid_pre, unit only"
ids = prompt_ids(h, prompt)
r = steered_generate(h, run.hook, sae, latent, code, prompt, max_new_tokens=1)
w = sae.W_dec[latent].detach().float()


def pre(mod, args, kwargs):
    x = args[0] if args else kwargs["hidden_states"]
    xc = x.float() - x.float().mean(-1, keepdim=True)
    d = code * w * xc.norm(dim=-1, keepdim=True)
    d[:, 0] = 0                     # BOS: never encoded, never steered
    y = (x.float() + d).to(x.dtype)
    return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})


with torch.no_grad():
    plain = h.model(input_ids=ids, use_cache=False).logits[0, -1].float()
    hd = h.blocks[hp.layer].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        hand = h.model(input_ids=ids, use_cache=False).logits[0, -1].float()
    finally:
        hd.remove()
tok = (lambda v: repr(h.tokenizer.decode([int(v.argmax())])))
print(f"latent {latent}, code {code}: max |steered − hand| = {float((r.steered_logits - hand).abs().max()):.2e}; "
      f"max |steered − unsteered| = {float((r.steered_logits - plain).abs().max()):.3f}; "
      f"top-1 {tok(plain)} → {tok(r.steered_logits)}; ‖delta_t‖ = {code * float(w.norm()):.3f} × ‖x_t − mean‖")

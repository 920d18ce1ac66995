import numpy as np
import torch
import torch.nn.functional as F

from probsae.data import capture, token_windows
from probsae.interp import LatentCache, build_latent_cache


def _direct_codes(handle, sae, docs, n_windows):
    """Codes computed directly (no cache): list of (window, pos, latent, value)."""
    out = {}
    w0 = 0
    for wb in token_windows(docs, handle.tokenizer, 32, batch_size=8, max_length=handle.max_length):
        with torch.inference_mode():
            x = capture(handle, "resid_post.1", wb.input_ids, wb.attention_mask)
            for b in range(len(wb)):
                if w0 + b >= n_windows:
                    return out
                keep = wb.token_mask[b]
                codes = sae.encode(x[b][keep])
                pos = keep.nonzero().squeeze(1)
                for r, l in zip(*(codes != 0).nonzero(as_tuple=True)):
                    out[(w0 + b, int(pos[r]), int(l))] = float(codes[r, l])
        w0 += len(wb)
    return out


def test_cache_matches_direct_encoding(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    cache = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=60,
                               chunk_windows=16, group_size=16, n_nonactivating=8)
    assert cache.n_windows == 60 and len(cache.manifest["chunks"]) == 4
    direct = _direct_codes(handle, sae, docs, 60)
    recs = cache.records(range(sae.d_sae))
    n = 0
    for l, rec in recs.items():
        for i, w in enumerate(rec.windows):
            for p in np.flatnonzero(rec.acts[i]):
                assert abs(rec.acts[i, p] - abs(direct[(int(w), int(p), l)])) < 1e-4
                n += 1
    assert n == len(direct) > 0
    st = cache.stats()
    assert st.token_counts.sum() == len(direct)
    assert all(st.window_counts[l] == len(recs[l]) for l in recs)
    # prob_topk's pre-gate score LayerNorm(a), at firing tokens only, equal to the SAE's own
    rec = max(recs.values(), key=len)
    g = rec.extras["gate_logits"]
    assert np.isfinite(g[rec.acts > 0]).all() and np.isnan(g[rec.acts == 0]).all()
    w, p = int(rec.windows[0]), int(np.flatnonzero(rec.acts[0])[0])
    wb = next(token_windows(docs, handle.tokenizer, 32, batch_size=w + 1, max_length=handle.max_length))
    with torch.inference_mode():
        x = capture(handle, "resid_post.1", wb.input_ids[w:w + 1], wb.attention_mask[w:w + 1])[0, p]
        x_n, _ = sae.normalizer(x[None])
        want = F.layer_norm(sae.pre_acts(x_n), (sae.d_sae,), sae.ln_weight, sae.ln_bias)[0, rec.latent]
    assert abs(float(g[0, p]) - float(want)) < 2e-2 * max(1.0, abs(float(want)))   # stored as float16
    # non-activating sample: windows where the latent never fires
    for l in list(recs)[:10]:
        na = cache.nonactivating(l)
        assert len(set(na.tolist()) & set(recs[l].windows.tolist())) == 0
    # window text round-trips through the stored tokenizer
    ids, keep = cache.tokens([3])
    assert cache.text(3) == handle.tokenizer.decode([int(t) for t, k in zip(ids[0], keep[0]) if k]).strip()


def test_cache_is_reused_and_reopens(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    c1 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    mtime = (tmp_path / "c" / "chunk_00000.safetensors").stat().st_mtime_ns
    c2 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    assert (tmp_path / "c" / "chunk_00000.safetensors").stat().st_mtime_ns == mtime
    assert LatentCache(tmp_path / "c").manifest == c2.manifest == c1.manifest

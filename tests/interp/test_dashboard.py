"""Dashboards opened in headless Chromium: the DOM and screenshots of (a) a GPT-2-shaped tiny model
run (logit effects shown), (b) the MiniLM interp fixture run (encoder: no logit effects, gate panel)
(c) the main job's run, whose dashboard and screenshots are committed under
docs/results/dashboard/ (made by scripts/dashboard_screenshots.sh), and (d) the committed tiny
GPT-2 dashboard in docs/results/dashboard/tiny-gpt2/ (scripts/tiny_gpt2_dashboard.sh)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from probsae.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "results" / "dashboard"
SHADE = (255, 120, 30)        # token shading rgba(255, 120, 30, α) over white
POS, NEG = (28, 126, 214), (224, 49, 49)   # logit-effect bars (--pos, --neg)
PROB_TOPK = (0xD5, 0x5E, 0x00)             # the prob_topk chip (its presentation colour)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        script = ROOT / "scripts" / "install_chromium.sh"
        try:
            r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"chromium is not installed and scripts/install_chromium.sh could not run: {e}")
        exe = find_chromium()
        if exe is None:
            pytest.skip("chromium is not installed and cannot be installed here "
                        f"(scripts/install_chromium.sh: {(r.stderr or r.stdout).strip()[-300:]})")
    return exe


def headless(exe: str, tmp: Path, *args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": str(tmp)})


def dom(exe: str, tmp: Path, url: str) -> str:
    r = headless(exe, tmp, "--virtual-time-budget=5000", "--dump-dom", url)
    assert r.returncode == 0 and "<section" in r.stdout, r.stderr[-2000:]
    return r.stdout


def screenshot(exe: str, tmp: Path, url: str, out: Path, size=(1400, 1100)) -> np.ndarray:
    r = headless(exe, tmp, "--virtual-time-budget=5000", f"--window-size={size[0]},{size[1]}",
                 f"--screenshot={out}", url)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    return pixels(out)


def pixels(png: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def count_colour(img: np.ndarray, rgb, tol: int = 12) -> int:
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).sum())


def count_shading(img: np.ndarray) -> int:
    """Pixels of the token shading: rgba(255,120,30,α) over white for α ≥ 0.3 (R = 255,
    G = 255 − 135α, B = 255 − 225α; the legend's gradient is thinner than the tokens)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    alpha = (255 - g) / 135.0
    return int(((r >= 250) & (alpha >= 0.3) & (np.abs(b - (255 - 225 * alpha)) <= 8)).sum())


# ---- (a) a GPT-2-shaped tiny causal LM -----------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_run(tmp_path_factory):
    import random

    from probsae.data.tiny import TINY_WORDS, save_tiny_model

    root = tmp_path_factory.mktemp("gpt2_dash")
    save_tiny_model(root / "model", "gpt2", n_layers=3, d_model=32, max_positions=64)
    rng = random.Random(0)
    (root / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(TINY_WORDS) for _ in range(40)) for _ in range(160)))
    run = root / "run"
    assert main(["train", "--arch", "prob_topk", "--k", "4", "--expansion", "2", "--model", str(root / "model"),
                 "--hook", "resid_pre.2", "--corpus", str(root / "corpus.txt"), "--context-length", "48",
                 "--eval-tokens", "300", "--batch-size", "64", "--steps", "30", "--lr", "3e-3", "--warmup-steps", "2",
                 "--log-every", "5", "--no-progress", "--cache-dir", str(root / "cache"), "--out", str(run)]) == 0
    return run


def test_causal_lm_dashboard_shows_logit_effects(gpt2_run, tmp_path, chromium, capsys):
    from probsae import load_sae
    from probsae.data import load_model

    out = tmp_path / "dash"
    assert main(["dashboard", str(gpt2_run), "--out", str(out), "--n-latents", "6", "--order", "frequent",
                 "--n-windows", "60", "--no-progress"]) == 0
    assert "(6 latents, 60 windows × 48 tokens)" in capsys.readouterr().out   # the run's context length
    data = json.loads((out / "data.json").read_text())
    assert data["window_len"] == 48 and data["logits"]["available"]
    # logit effects = the top entries of W_dec · W_U with ln_f folded in, recomputed here (the random
    # model's ln_f gain is 1: the fold is the LayerNorm's centring of the direction)
    sae, handle = load_sae(gpt2_run), load_model(str(gpt2_run.parent / "model"))
    L = data["latents"][0]
    d = sae.W_dec[L["id"]] - sae.W_dec[L["id"]].mean()
    eff = (d * handle.model.transformer.ln_f.weight @ handle.model.get_output_embeddings().weight.T).detach()
    want = [handle.tokenizer.decode([int(i)]) for i in eff.topk(10).indices]
    assert [t for t, _ in L["logits"]["pos"]] == want
    assert L["logits"]["neg"][0][1] == pytest.approx(float(eff.min()), abs=1e-4)
    assert all(len(ex["tokens"]) <= 32 + 8 + 1 for ex in L["top"])           # left context + right context

    html = (out / "index.html").as_uri()
    page = dom(chromium, tmp_path / "profile", html)
    assert "top positive logits" in page and "top negative logits" in page
    assert page.count('class="logit"') == 20
    img = screenshot(chromium, tmp_path / "profile", html, tmp_path / "shot.png")
    assert img.shape == (1100, 1400, 3)
    assert count_colour(img, POS) > 200 and count_colour(img, NEG) > 200     # the logit bars are drawn
    assert count_shading(img) > 500                                         # shaded tokens
    assert count_colour(img, PROB_TOPK) > 50                                # the architecture colour


# ---- (b) the MiniLM interp fixture (an encoder) ----------------------------------------------------------
def test_encoder_dashboard_renders_in_chromium(trained_run, tmp_path, chromium, capsys):
    out = tmp_path / "dash"
    assert main(["dashboard", str(trained_run), "--out", str(out), "--n-latents", "12", "--order", "frequent",
                 "--n-windows", "80", "--window-len", "64", "--no-progress"]) == 0
    html = out / "index.html"
    src = html.read_text()
    assert "<script src=" not in src and "<link" not in src                  # offline, no CDN
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", src) and "@import" not in src
    data = json.loads((out / "data.json").read_text())
    assert data["architecture"] == "prob_topk" and data["gate"] is not None and len(data["latents"]) == 12
    assert not data["logits"]["available"] and "not a causal LM" in data["logits"]["note"]
    assert sum(data["density_hist"]["counts"]) + data["density_hist"]["dead"] == data["d_sae"]
    first, other = data["latents"][0], data["latents"][5]

    page = dom(chromium, tmp_path / "profile", html.as_uri())
    assert f"Latent {first['id']}" in page and all(f"Latent {l['id']}" in page for l in data["latents"])
    tok = next(t for t in first["top"][0]["tokens"] if t.strip() and len(t.strip()) > 2)
    assert tok.strip() in page                                            # token text
    assert re.search(r'class="tok on( maxtok)?"[^>]*style="background-color: rgba\(255, 120, 30, 0?\.\d+\)', page)
    assert 'class="tok on maxtok"' in page                                 # the strongest token marked
    assert "not a causal LM" in page                                      # no logit effects, said so
    assert "gate-panel" in page and "pre-gate score" in page              # prob_topk gate panel
    assert "density-panel" in page and 'class="mark"' in page             # all-latent density, this one marked
    assert page.count("<svg") >= 3 and ">tokens<" in page and ">latents<" in page   # histograms with axes
    assert "strongest token of the context" in page                       # colour legend
    assert "80-100%" in page and "0-20%" in page                          # per-bucket contexts

    r2 = dom(chromium, tmp_path / "profile", html.as_uri() + f"#latent-{other['id']}")
    assert f'data-latent="{other["id"]}"' in r2 and f"<h2>Latent {other['id']}</h2>" in r2
    # search by context text: a word of one latent's top context keeps that latent in the list
    word = next(w for w in other["search"].split() if len(w) > 3)
    n_match = sum(word in l["search"] for l in data["latents"])
    r3 = dom(chromium, tmp_path / "profile", html.as_uri() + f"?q={word}")
    assert f"{n_match} / 12 latents match" in r3
    # flags, position histogram; the search also finds alive latents that have no page here
    assert "position-panel" in page and ">position in window<" in page and ">flags<" in page
    off = next(r for r in data["index"] if r[0] not in {l["id"] for l in data["latents"]})
    r4 = dom(chromium, tmp_path / "profile", html.as_uri() + f"?q={off[0]}")
    assert f'data-off="{off[0]}"' in r4 and "more not on this page" in r4


def test_order_interp_renders_exactly_the_scored_latents(trained_run, tmp_path, capsys):
    res = trained_run / "interp" / "detection-llm-0000000000"
    res.mkdir(parents=True, exist_ok=True)
    scored = [3, 17, 40]
    res.joinpath("scores.jsonl").write_text("".join(json.dumps(
        {"latent": l, "bucket": b, "explanation": f"the word number {l}", "score": 0.7, "scorer": "detection",
         "explanation_source": "llm"}) + "\n" for l in scored for b in range(5)))
    try:
        out = tmp_path / "dash"
        assert main(["dashboard", str(trained_run), "--out", str(out), "--order", "interp", "--n-windows", "80",
                     "--window-len", "64", "--no-progress"]) == 0
        assert "(3 latents (the latents autointerp scored)" in capsys.readouterr().out
        data = json.loads((out / "data.json").read_text())
        assert [l["id"] for l in data["latents"]] == scored
        assert data["latents"][1]["interp"]["0"]["explanation"] == "the word number 17"
    finally:
        shutil.rmtree(res)


def test_window_start_warning_follows_the_profile_flag(tmp_path, planted_cache, minilm):
    """One rule: the page's window-start warning is the profile's flag (share of ALL the latent's
    firing tokens, over the whole cache), not a second rule on its top contexts. Latent 4's three
    strongest firings sit at a window's first token, but 20 of its 23 firings do not."""
    from probsae.interp.dashboard import dashboard_data

    cache = planted_cache(tmp_path / "c", tokenizer=minilm.tokenizer, start_tops=True)
    data = dashboard_data(cache, [0, 1, 2, 3, 4], n_top=3, progress=False)
    by = {l["id"]: l for l in data["latents"]}
    assert by[4]["top_at_start"] == 3 and by[4]["start_share"] == pytest.approx(3 / 23, abs=1e-4)
    assert not by[4]["start_flag"] and by[4]["flags"] == []
    assert by[3]["start_flag"] and by[3]["start_share"] == 1.0
    for l in by.values():
        assert l["start_flag"] == ("window-start" in l["flags"])


def test_embedded_json_cannot_break_out_of_its_script_element():
    """`<!--<script>` in a string put the HTML parser into the 'script data double escaped'
    state and blanked the page; every < > & is now written as a \\uXXXX escape."""
    from probsae.interp.dashboard import json_for_script, render_html

    data = {"title": "t", "latents": [], "nasty": ["<!--<script>", "</script><b>x</b>", "a & b", "\u2028"]}
    blob = json_for_script(data)
    assert not set("<>&") & set(blob) and "\u2028" not in blob
    assert json.loads(blob) == data
    html = render_html(data)
    body = html.split('<script id="dashboard-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(body) == data


# ---- (c) the main job's run, committed under docs/results/dashboard ----------------------------------------
def test_committed_main_job_dashboard_and_screenshots(tmp_path, chromium):
    made = (COMMITTED / "README.md").read_text()
    assert "bash scripts/dashboard_screenshots.sh runs/minilm-prob_topk-k8" in made
    data = json.loads((COMMITTED / "data.json").read_text())
    assert data["model"] == "minilm" and data["hook"] == "resid_pre.4" and data["architecture"] == "prob_topk"
    assert data["window_len"] == 256 and not data["logits"]["available"]
    page = dom(chromium, tmp_path / "profile", (COMMITTED / "index.html").as_uri())
    assert "256 tokens (the training context length)" in page and "not a causal LM" in page
    shots = sorted(COMMITTED.glob("*.png"))
    assert len(shots) >= 2
    for png in shots:
        img = pixels(png)
        assert img.shape == (1100, 1400, 3), png
        assert count_shading(img) > 300, f"{png.name}: no shaded tokens"
        assert count_colour(img, PROB_TOPK) > 50, f"{png.name}: no architecture chip"
    flagged = [l for l in data["latents"] if l["start_flag"]]
    if flagged:   # the window-start warning is on the page of such a latent
        page = dom(chromium, tmp_path / "profile", (COMMITTED / "index.html").as_uri() + f"#latent-{flagged[0]['id']}")
        assert "Window-start latent" in page


def test_committed_tiny_gpt2_dashboard_shows_logit_effects(tmp_path, chromium):
    """docs/results/dashboard/tiny-gpt2 (scripts/tiny_gpt2_dashboard.sh): a causal LM's pages
    carry logit effects, drawn as blue and red bars in every committed screenshot."""
    folder = COMMITTED / "tiny-gpt2"
    assert "bash scripts/tiny_gpt2_dashboard.sh" in (folder / "README.md").read_text()
    data = json.loads((folder / "data.json").read_text())
    assert data["hook"] == "resid_pre.2" and data["architecture"] == "prob_topk" and data["logits"]["available"]
    assert all(len(l["logits"]["pos"]) == 10 and len(l["logits"]["neg"]) == 10 for l in data["latents"])
    page = dom(chromium, tmp_path / "profile", (folder / "index.html").as_uri())
    assert "top positive logits" in page and "top negative logits" in page
    shots = sorted(folder.glob("*.png"))
    assert [p.name for p in shots if p.name.startswith("1-")] == ["1-most-frequent.png"]
    for png in shots:
        img = pixels(png)
        assert img.shape == (1100, 1400, 3), png
        assert count_colour(img, POS) > 200 and count_colour(img, NEG) > 200, f"{png.name}: no logit bars"
        assert count_shading(img) > 300, f"{png.name}: no shaded tokens"
        assert count_colour(img, PROB_TOPK) > 50, f"{png.name}: no architecture chip"


def _fake_interp_results(run: Path, n_buckets: int, latents, with_settings=True) -> Path:
    """An autointerp results directory as `probsae autointerp --n-buckets N` writes it."""
    from probsae.interp.sampling import bucket_edges

    res = run / "interp" / "detection-llm-1111111111"
    res.mkdir(parents=True, exist_ok=True)
    edges = bucket_edges(n_buckets)
    res.joinpath("scores.jsonl").write_text("".join(json.dumps(
        {"latent": l, "bucket": b, "explanation": f"latent {l} bucket {b} text", "score": 0.5, "scorer": "detection",
         "explanation_source": "llm"}) + "\n" for l in latents for b in range(n_buckets)))
    if with_settings:
        res.joinpath("settings.json").write_text(json.dumps({"key": res.name, "settings": {"n_buckets": n_buckets}}))
        res.joinpath("explanations.jsonl").write_text("".join(json.dumps(
            {"latent": l, "bucket": b, "bucket_label": f"{edges[b][0]:g}-{edges[b][1]:g}%"}) + "\n"
            for l in latents for b in range(n_buckets)))
    return res


def test_explanations_keep_the_bucket_labels_autointerp_used(trained_run, tmp_path, capsys, chromium):
    """Issue 24, finding 19: after `autointerp --n-buckets 2`, `dashboard --order interp` shows the
    50-100 % explanation under "50-100%" (not the dashboard's own 5-bucket "20-40%"); by default its
    percentile panels use autointerp's 2 buckets, and with an explicit --n-buckets 5 the explanation
    still carries autointerp's label."""
    common = ["--n-windows", "80", "--window-len", "64", "--no-progress"]
    probe = tmp_path / "probe"
    assert main(["dashboard", str(trained_run), "--out", str(probe), "--order", "frequent", "--n-latents", "2",
                 *common]) == 0
    ids = sorted(l["id"] for l in json.loads((probe / "data.json").read_text())["latents"])
    res = _fake_interp_results(trained_run, 2, latents=ids)
    common = ["--order", "interp", *common]
    try:
        out = tmp_path / "dash"
        assert main(["dashboard", str(trained_run), "--out", str(out), *common]) == 0
        data = json.loads((out / "data.json").read_text())
        assert data["n_buckets"] == data["interp_buckets"] == 2
        lat = data["latents"][1]
        assert lat["id"] == ids[1] and [b["label"] for b in lat["buckets"]] == ["0-50%", "50-100%"]
        assert lat["interp"]["1"]["label"] == "50-100%" and lat["interp"]["0"]["label"] == "0-50%"
        page = re.sub(r"<[^>]+>", "", dom(chromium, tmp_path / "profile",
                                          (out / "index.html").as_uri() + f"#latent-{ids[1]}"))
        assert f"50-100%: latent {ids[1]} bucket 1 text" in page and f"20-40%: latent {ids[1]}" not in page
        out5 = tmp_path / "dash5"
        assert main(["dashboard", str(trained_run), "--out", str(out5), "--n-buckets", "5", *common]) == 0
        data5 = json.loads((out5 / "data.json").read_text())
        assert len(data5["latents"][1]["buckets"]) == 5
        assert data5["latents"][1]["interp"]["1"]["label"] == "50-100%"
        page5 = re.sub(r"<[^>]+>", "", dom(chromium, tmp_path / "profile",
                                           (out5 / "index.html").as_uri() + f"#latent-{ids[1]}"))
        assert f"50-100%: latent {ids[1]} bucket 1 text" in page5 and f"20-40%: latent {ids[1]}" not in page5
        # results written without settings.json/explanations.jsonl: no label is guessed
        shutil.rmtree(res)
        res = _fake_interp_results(trained_run, 2, latents=ids, with_settings=False)
        assert main(["dashboard", str(trained_run), "--out", str(out), *common]) == 0
        data = json.loads((out / "data.json").read_text())
        assert data["latents"][1]["interp"]["1"]["label"] is None and data["n_buckets"] == 5
    finally:
        shutil.rmtree(res)


def test_dashboard_out_of_user_files_is_refused_unless_force(trained_run, tmp_path, capsys):
    """Issue 24, finding 14: `dashboard --out` into a folder of the user's own index.html and
    data.json exits 2 (before any work) and leaves them alone; --force writes; a folder that holds
    a dashboard is rewritten without --force."""
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "index.html").write_text("<p>my page</p>")
    (mine / "data.json").write_text('{"mine": true}')
    argv = ["dashboard", str(trained_run), "--out", str(mine), "--n-latents", "3", "--n-windows", "80",
            "--window-len", "64", "--no-progress"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--force" in err and "index.html" in err and "not empty" in err
    assert (mine / "index.html").read_text() == "<p>my page</p>" and (mine / "data.json").read_text() == '{"mine": true}'
    assert main([*argv, "--force"]) == 0
    assert json.loads((mine / "data.json").read_text())["format"] == "probsae-dashboard"
    assert main(argv) == 0


def test_latent_pages_carry_flags_position_histogram_and_the_search_index(tmp_path, planted_cache, minilm):
    from probsae.interp.dashboard import dashboard_data

    cache = planted_cache(tmp_path / "c", tokenizer=minilm.tokenizer)
    data = dashboard_data(cache, [0, 1, 2, 3], n_top=3, progress=False)
    by = {l["id"]: l for l in data["latents"]}
    assert by[0]["flags"] == ["positional"] and by[0]["band"][:2] == [41, 45]
    assert by[1]["flags"] == ["dense"] and by[2]["flags"] == [] and by[3]["flags"] == ["window-start"]
    assert by[3]["start_flag"] and not by[0]["start_flag"]
    h = by[0]["pos_hist"]
    assert len(h["counts"]) == 64 and h["edges"][40] == 40 and sum(h["counts"][40:46]) == pytest.approx(sum(h["counts"]))
    assert by[1]["max_act"] == 0.5 and by[2]["density"] == pytest.approx(20 / 1280)
    assert [r[0] for r in data["index"]] == [0, 1, 2, 3] and data["index"][1][3] == ["dense"]
    assert data["thresholds"]["dense"] == 0.10


def test_order_frequent_sorts_by_density_then_max_activation(tmp_path, planted_cache):
    from probsae.interp.dashboard import choose_dashboard_latents

    cache = planted_cache(tmp_path / "c")
    # every latent fires in all 20 windows (the old order: ties kept in id order); by density:
    # 1 (100 %), 0 (6/64), then 2 and 3 tie at 1/64 and the larger max activation (2: 21 > 3: 3) wins
    assert choose_dashboard_latents(cache, 4, order="frequent") == [1, 0, 2, 3]


def test_default_n_windows_is_capped_to_the_time_budget_an_explicit_one_is_not(trained_run, tmp_path, monkeypatch):
    import probsae.interp.pipeline as pipeline
    from probsae.errors import InputError
    from probsae.interp.cost import DEFAULT_N_WINDOWS, TIME_BUDGET_S

    seen = []

    def fake_cache(info, **kw):
        seen.append(kw)
        raise InputError("stop")
    monkeypatch.setattr(pipeline, "ensure_cache", fake_cache)
    argv = ["dashboard", str(trained_run), "--out", str(tmp_path / "d"), "--no-progress"]
    assert main(argv) == 2 and main([*argv, "--n-windows", "4096"]) == 2
    assert (seen[0]["n_windows"], seen[0]["time_budget_s"]) == (DEFAULT_N_WINDOWS, TIME_BUDGET_S)
    assert (seen[1]["n_windows"], seen[1]["time_budget_s"]) == (4096, None)

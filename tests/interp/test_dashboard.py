"""The dashboard of a trained run, opened in headless Chromium: check what the page shows."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from probsae.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


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
           "--disable-dev-shm-usage", f"--user-data-dir={tmp}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": str(tmp)})


def test_dashboard_renders_in_chromium(trained_run, tmp_path, chromium, capsys):
    out = tmp_path / "dash"
    assert main(["dashboard", str(trained_run), "--out", str(out), "--n-latents", "12",
                 "--order", "frequent", "--n-windows", "160"]) == 0
    html = out / "index.html"
    src = html.read_text()
    assert "<script src=" not in src and "<link" not in src                  # offline, no CDN
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", src) and "@import" not in src
    data = json.loads((out / "data.json").read_text())
    assert data["architecture"] == "prob_topk" and data["has_gate"] and len(data["latents"]) == 12
    first, other = data["latents"][0], data["latents"][5]

    r = headless(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", html.as_uri())
    dom = r.stdout
    assert r.returncode == 0 and "<section" in dom, r.stderr[-2000:]
    assert f"Latent {first['id']}" in dom                                  # the latent shown
    assert all(f"Latent {l['id']}" in dom for l in data["latents"])          # the latent list
    tok = next(t for t in first["top"][0]["tokens"] if t.strip() and len(t.strip()) > 2)
    assert tok.strip() in dom                                             # token text
    assert re.search(r'class="tok on"[^>]*style="background-color: rgba\(255, 120, 30, 0?\.\d+\)', dom)  # shading
    assert "mean gate prob" in dom and "gate p " in dom                   # prob_topk gate probabilities
    assert "firing density" in dom and "<svg" in dom and "<rect" in dom   # density + histogram
    assert "80-100%" in dom and "0-20%" in dom                            # per-bucket contexts

    # another latent through the URL fragment
    r2 = headless(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom",
                  html.as_uri() + f"#latent-{other['id']}")
    assert f'data-latent="{other["id"]}"' in r2.stdout and f"<h2>Latent {other['id']}</h2>" in r2.stdout


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

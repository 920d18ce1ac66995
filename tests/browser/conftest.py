"""Fixtures of the live-browser tests: a tiny random-weight GPT-2 run (trained by the CLI), its
:class:`~probsae.browser.Browser` over a small latent cache, the app served by uvicorn on
127.0.0.1 in a background thread (one server per module, stopped at its end or after a time
limit), and headless Chromium (the dashboard tests' helpers and skip logic)."""

from __future__ import annotations

import importlib.util
import json
import random
import threading
import time
from pathlib import Path

import pytest
import torch

from probsae.cli.main import main

HERE = Path(__file__).resolve().parent
PLANTED = "zebra crossing detector"
"""The autointerp explanation planted for the run's highest-id alive latent."""


def _dashboard_tests():
    spec = importlib.util.spec_from_file_location("browser_dashboard_helpers", HERE.parent / "interp" / "test_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DASH = _dashboard_tests()
chromium = DASH.chromium   # module-scoped fixture: the executable, or the test is skipped


def tiny_run(root: Path, family: str) -> Path:
    """``probsae train`` of a prob_topk SAE on a tiny random-weight ``family`` model."""
    from probsae.data.tiny import TINY_WORDS, save_tiny_model

    save_tiny_model(root / "model", family, n_layers=3, d_model=32, max_positions=64)
    rng = random.Random(0)
    (root / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(TINY_WORDS) for _ in range(40)) for _ in range(120)))
    run = root / "run"
    assert main(["train", "--arch", "prob_topk", "--k", "4", "--expansion", "2", "--model", str(root / "model"),
                 "--hook", "resid_pre.2", "--corpus", str(root / "corpus.txt"), "--context-length", "48",
                 "--eval-tokens", "300", "--batch-size", "64", "--steps", "20", "--lr", "3e-3", "--warmup-steps", "2",
                 "--log-every", "5", "--no-progress", "--cache-dir", str(root / "cache"), "--out", str(run)]) == 0
    return run


def plant_explanation(run: Path, latent: int, text: str = PLANTED) -> None:
    """An autointerp result (RUN/interp/<key>/scores.jsonl) explaining ``latent``."""
    d = run / "interp" / "detection-llm-planted"
    d.mkdir(parents=True, exist_ok=True)
    (d / "scores.jsonl").write_text(json.dumps({"latent": latent, "bucket": 0, "explanation": text, "score": 0.9,
                                                "explanation_source": "llm", "scorer": "detection"}) + "\n")


def open_browser(run: Path):
    from probsae.browser import Browser

    return Browser.open(run, n_windows=60, window_len=48, batch_size=16, progress=False)


@pytest.fixture(scope="session")
def gpt2_browser(tmp_path_factory):
    """A Browser over a tiny GPT-2 run, with an explanation planted for its highest-id alive latent."""
    torch.set_num_threads(1)
    run = tiny_run(tmp_path_factory.mktemp("browser_gpt2"), "gpt2")
    b = open_browser(run)
    top = int(max(row[0] for row in b.index))
    plant_explanation(run, top)
    return open_browser(run)   # the explanation is read when the browser opens (cache reused)


class Live:
    """The app served on 127.0.0.1 at a free port in a daemon thread."""

    def __init__(self, browser, limit_s: float = 300.0):
        from probsae.browser import ServeConfig, bind, server

        self.sock = bind(ServeConfig(port=0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = server(browser)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.timer = threading.Timer(limit_s, self.stop)   # bounded: stops itself
        self.timer.daemon = True
        self.timer.start()
        t0 = time.monotonic()
        while not self.server.started and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.timer.cancel()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(gpt2_browser):
    srv = Live(gpt2_browser)
    yield srv
    srv.stop()
    assert not srv.thread.is_alive()


@pytest.fixture(scope="module")
def dom(chromium, tmp_path_factory):
    """``dom(url)``: the DOM headless Chromium renders for ``url``."""
    prof = tmp_path_factory.mktemp("chromium_profile")

    def load(url: str) -> str:
        r = DASH.headless(chromium, prof, "--virtual-time-budget=3000", "--dump-dom", url, timeout=60)
        assert r.returncode == 0 and "<main>" in r.stdout, r.stderr[-2000:]
        return r.stdout

    return load

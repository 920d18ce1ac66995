"""Fixtures of the live-browser tests: a tiny random-weight GPT-2 run (trained by the CLI), its
:class:`~probsae.browser.Browser` over a small latent cache, the app served by uvicorn on
127.0.0.1 in a background thread (one server per module, stopped at its end or after a time
limit), and headless Chromium (the dashboard tests' helpers and skip logic)."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest
import torch

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
gpt2_run = DASH.gpt2_run   # module-scoped fixture: a prob_topk run on a tiny random-weight GPT-2


def plant_explanation(run: Path, latent: int, text: str = PLANTED) -> None:
    """An autointerp result (RUN/interp/<key>/scores.jsonl) explaining ``latent``."""
    d = run / "interp" / "detection-llm-planted"
    d.mkdir(parents=True, exist_ok=True)
    (d / "scores.jsonl").write_text(json.dumps({"latent": latent, "bucket": 0, "explanation": text, "score": 0.9,
                                                "explanation_source": "llm", "scorer": "detection"}) + "\n")


def open_browser(run: Path):
    from probsae.browser import Browser

    return Browser.open(run, n_windows=60, window_len=48, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def gpt2_browser(gpt2_run):
    """A Browser over the tiny GPT-2 run, with an explanation planted for its highest-id alive latent."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small forward passes on a shared machine: one thread is faster
    run = gpt2_run
    b = open_browser(run)
    top = int(max(row[0] for row in b.index))
    plant_explanation(run, top)
    yield open_browser(run)   # the explanation is read when the browser opens (cache reused)
    torch.set_num_threads(threads)


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

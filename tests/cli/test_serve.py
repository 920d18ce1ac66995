"""``probsae serve``: a non-loopback host is refused before anything loads; the real command on a
tiny encoder run prints its URL, serves the pages (steering says it needs a causal LM, not a
500), and stops cleanly on Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from probsae.cli.main import main
from probsae.data.tiny import save_tiny_model, tiny_documents

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org"])
def test_a_non_loopback_host_is_refused_without_allow_remote(host, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "no-run"), "--host", host]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--allow-remote" in err and "no authentication" in err


def test_a_port_out_of_range_is_refused(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "no-run"), "--port", "70000"]) == 2
    assert "port must be 0..65535" in capsys.readouterr().err


def test_serve_an_encoder_run_then_ctrl_c(tmp_path):
    save_tiny_model(tmp_path / "model", "bert", n_layers=2, d_model=32, max_positions=64)
    (tmp_path / "corpus.txt").write_text("\n\n".join(tiny_documents(80)))
    run = tmp_path / "run"
    assert main(["train", "--arch", "topk", "--k", "2", "--expansion", "2", "--model", str(tmp_path / "model"),
                 "--hook", "resid_post.1", "--corpus", str(tmp_path / "corpus.txt"), "--context-length", "32",
                 "--eval-tokens", "100", "--batch-size", "32", "--steps", "6", "--no-progress",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(run)]) == 0
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "probsae", "serve", str(run), "--port", "0", "--n-windows", "16",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        url = m.group(1)
        t0 = time.monotonic()
        while True:   # uvicorn starts right after the line is printed
            try:
                page = urllib.request.urlopen(url + "steer?latent=0", timeout=10).read().decode()
                break
            except OSError:
                assert time.monotonic() - t0 < 20
                time.sleep(0.1)
        assert "steering needs a causal LM" in page and "is an encoder" in page
        assert "steer with this latent" not in urllib.request.urlopen(url + "latent/0", timeout=10).read().decode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err

"""Explain → detection score → Table 2 against a real local HTTP chat-completions server."""

import json
from pathlib import Path
import socket

import pytest

from probsae.cli.main import main
from probsae.interp import ChatClient, LLMConfig
from probsae.interp.llm_client import LLMEndpointError


def _client(base_url, tmp_path, **kw):
    cfg = LLMConfig(base_url=base_url, model="fake-model", api_key="sk-test", timeout=0.5,
                    max_retries=3, backoff=0.01, concurrency=4, cache_dir=str(tmp_path / "llm_cache"))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return ChatClient(cfg)


def _msgs(i):
    return [{"role": "system", "content": "Classify. Reply with a JSON list."},
            {"role": "user", "content": f'Explanation: the token "cat"\n\nExcerpt 1: a cat {i}\nExcerpt 2: a dog {i}'}]


def test_client_retries_timeouts_and_caches(fake_llm, tmp_path):
    c = _client(fake_llm.base_url, tmp_path)
    # 1st request is slow (times out), 2nd gets HTTP 500, 3rd a non-JSON body: all retried
    results = [c.complete(_msgs(i), temperature=0) for i in range(3)]
    assert all(r.ok for r in results), [r.error for r in results]
    st = c.report()
    # (>=: on a very loaded machine an ordinary request may also time out once; it is retried too)
    assert st["error:timeout"] >= 1 and st["error:http_500"] == 1 and st["error:malformed"] == 1
    assert st["retries"] >= 3 and st.get("failures", 0) == 0
    assert fake_llm.kinds["slow"] == fake_llm.kinds["http500"] == fake_llm.kinds["badjson"] == 1
    body = fake_llm.bodies[-1]
    assert body["model"] == "fake-model" and body["temperature"] == 0 and body["messages"][1]["role"] == "user"
    # identical request again: served from the on-disk cache, the server sees nothing
    n = fake_llm.n_requests
    again = _client(fake_llm.base_url, tmp_path).complete(_msgs(1), temperature=0)
    assert again.cached and again.text == results[1].text and fake_llm.n_requests == n
    # different params = different cache key
    assert not c.complete(_msgs(1), temperature=0.5).cached


def test_client_failures_never_raise(fake_llm, tmp_path):
    bad = _client(fake_llm.base_url.replace("/v1", "/nope"), tmp_path, max_retries=1)
    r = bad.complete(_msgs(0))
    assert not r.ok and r.error == "http_404" and r.attempts == 1     # 4xx: not retried
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    down = _client(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=2)
    r = down.complete(_msgs(0))
    assert not r.ok and r.error == "connection" and r.attempts == 3
    assert down.report()["failures"] == 1


def test_autointerp_cli_with_llm(fake_llm, trained_run, tmp_path, capsys):
    out = tmp_path / "table"
    argv = ["autointerp", str(trained_run), "--llm-base-url", fake_llm.base_url, "--llm-model", "fake",
            "--llm-timeout", "0.5", "--llm-concurrency", "4", "--n-latents", "6", "--n-explain", "3",
            "--n-test", "3", "--n-windows", "160", "--out", str(out), "--labels", "ProbTopK"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| ProbTopK |" in text and "detection" in text
    md = (out / "table2.md").read_text()
    assert "80-100%" in md and "Correlation" in md
    rows = json.loads((out / "table2.json").read_text())["runs"]
    row = rows[0]
    assert row["scorer"] == "detection" and row["explanation_source"] == "llm" and row["n_latents"] == 6
    assert row["n_scored"] > 0 and row["pearson_r"] is not None
    # explainer + detection prompts went to the server; the misbehaviour was absorbed and counted
    assert fake_llm.kinds["explain"] > 0 and fake_llm.kinds["detect"] > 0
    assert row["llm"]["retries"] >= 3 and row["llm"]["error:timeout"] >= 1
    assert row["detection_failed_prompts"] == fake_llm.kinds["malformed"] > 0
    assert (out / "figure5.png").read_bytes()[:4] == b"\x89PNG"
    res_dir = Path(row["results_dir"])                     # per-run results live in the run, keyed by settings
    assert res_dir.parent == trained_run / "interp" and res_dir.name.startswith("detection-llm-")
    scores = [json.loads(l) for l in (res_dir / "scores.jsonl").read_text().splitlines()]
    good = [s for s in scores if s["score"] is not None]
    assert good and all(0 <= s["score"] <= 1 and s["explanation"].startswith("the token") for s in good)
    assert all(set(s) >= {"precision", "recall", "f1", "n_failed_prompts"} for s in scores)
    # rerun: every request is a cache hit, nothing reaches the server, same table
    n = fake_llm.n_requests
    assert main(argv) == 0
    assert fake_llm.n_requests == n
    rows2 = json.loads((out / "table2.json").read_text())["runs"]
    assert rows2[0]["buckets"] == row["buckets"] and rows2[0]["llm"]["cache_hits"] > 0
    assert rows2[0]["llm"].get("requests", 0) == 0


class _Recorder:
    """A local HTTP server that records each request's Authorization header and answers with
    ``status`` (+ ``location``) or, by default, a valid completion."""

    def __init__(self, status=200, location=None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.auth: list[str | None] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.auth.append(self.headers.get("Authorization"))
                body = json.dumps({"choices": [{"message": {"content": "[1, 0]"}}]}).encode()
                try:
                    self.send_response(status)
                    if location:
                        self.send_header("Location", location)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped and cut this request off (ChatClient.stop)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_never_receives_the_key(tmp_path, status):
    other = _Recorder()  # "localhost" is another host than 127.0.0.1 for the client
    endpoint = _Recorder(status, f"http://localhost:{other.port}/v1/chat/completions")
    try:
        c = _client(f"http://127.0.0.1:{endpoint.port}/v1", tmp_path, api_key="sk-secret")
        with pytest.raises(LLMEndpointError, match=f"redirect \\(HTTP {status}\\).*localhost"):
            c.complete(_msgs(0))
        assert endpoint.auth == ["Bearer sk-secret"]
        assert other.auth == [], "the redirect was followed"
    finally:
        endpoint.stop()
        other.stop()


def _autointerp_argv(run, port: int, tmp_path) -> list[str]:
    """A small `probsae autointerp` against the endpoint at localhost:port."""
    return ["autointerp", str(run), "--llm-base-url", f"http://127.0.0.1:{port}/v1", "--llm-model", "fake",
            "--n-latents", "2", "--n-explain", "2", "--n-test", "2", "--n-windows", "160",
            "--out", str(tmp_path / "table"), "--llm-cache", str(tmp_path / "llm_cache")]


def test_autointerp_stops_on_a_redirect_without_leaking_the_key(trained_run, tmp_path, capsys, monkeypatch):
    other = _Recorder()
    endpoint = _Recorder(302, f"http://localhost:{other.port}/v1/chat/completions")
    monkeypatch.setenv("PROBSAE_LLM_API_KEY", "sk-secret")
    try:
        argv = _autointerp_argv(trained_run, endpoint.port, tmp_path)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "does not follow redirects" in err and "Traceback" not in err
        assert other.auth == []
    finally:
        endpoint.stop()
        other.stop()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_error_not_a_counted_failure(tmp_path, status):
    endpoint = _Recorder(status)
    try:
        c = _client(f"http://127.0.0.1:{endpoint.port}/v1", tmp_path)
        with pytest.raises(LLMEndpointError, match=f"HTTP {status}.*API key is not accepted"):
            c.complete(_msgs(0))
        assert len(endpoint.auth) == 1, "not retried"
    finally:
        endpoint.stop()


def test_complete_many_stops_sending_once_the_key_is_refused(tmp_path):
    """The progress loop of complete_many surfaces the 401 and cancels the queued requests instead
    of sending each of them with the refused key."""
    endpoint = _Recorder(401)
    try:
        c = _client(f"http://127.0.0.1:{endpoint.port}/v1", tmp_path, concurrency=2)
        with pytest.raises(LLMEndpointError, match="HTTP 401"):
            c.complete_many([(_msgs(i), {}) for i in range(40)], desc="test")
        assert 1 <= len(endpoint.auth) < 40
    finally:
        endpoint.stop()


def test_autointerp_exits_2_when_the_key_is_refused(trained_run, tmp_path, capsys, monkeypatch):
    """The CLI end of the 401 finding: `probsae autointerp` stops with exit 2 and the endpoint's
    refusal, instead of counting every explanation as a generic failure and exiting 0."""
    endpoint = _Recorder(401)
    monkeypatch.setenv("PROBSAE_LLM_API_KEY", "sk-wrong")
    try:
        argv = _autointerp_argv(trained_run, endpoint.port, tmp_path)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "HTTP 401" in err and "Traceback" not in err
        assert not (tmp_path / "table").exists() or not any((tmp_path / "table").iterdir())
    finally:
        endpoint.stop()

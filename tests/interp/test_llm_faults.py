"""The LLM client against a misbehaving HTTP server on 127.0.0.1 (tests/interp/bad_http.py):
protocol errors, slow-drip replies, huge bodies, Retry-After, non-http URLs and Ctrl-C
(issue 24, findings 1-6)."""

import importlib.util
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from probsae.errors import ConfigError
from probsae.interp import ChatClient, LLMConfig

_spec = importlib.util.spec_from_file_location("interp_bad_http", Path(__file__).with_name("bad_http.py"))
bad_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bad_http)


def _client(base_url, **kw):
    cfg = LLMConfig(base_url=base_url, model="m", timeout=2.0, max_retries=2, backoff=0.01, concurrency=2)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return ChatClient(cfg)


MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server():
    made = []

    def make(plays, **kw):
        made.append(bad_http.BadHTTP(plays, **kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


@pytest.mark.parametrize("play", ["truncated", "bad_status", "long_header", "bad_chunk"])
def test_protocol_errors_are_counted_and_retried(server, play):
    """Finding 1: IncompleteRead / BadStatusLine / LineTooLong (and a bad chunk size) are a counted,
    retried failure, not a traceback."""
    srv = server([play])
    c = _client(srv.base_url)
    r = c.complete(MSGS)
    assert r.ok and r.text == "[1, 0]" and r.attempts == 2
    assert c.report()["error:protocol"] == 1 and c.report()["retries"] == 1
    # every attempt fails the same way: the request fails, counted, and nothing is raised
    srv2 = server([play] * 3)
    r = _client(srv2.base_url).complete(MSGS)
    assert not r.ok and r.error == "protocol" and r.attempts == 3


@pytest.mark.parametrize("play", ["drip_body", "drip_head"])
def test_a_slow_drip_reply_is_cut_at_the_total_deadline(server, play):
    """Finding 3: a server sending one byte every 0.05 s cannot hold a call past its timeout."""
    srv = server([play])
    c = _client(srv.base_url, timeout=0.5, max_retries=0)
    t0 = time.monotonic()
    r = c.complete(MSGS)
    took = time.monotonic() - t0
    assert not r.ok and r.error == "timeout", r
    assert took < 1.5, f"the call took {took:.1f} s with timeout 0.5 s"


@pytest.mark.parametrize("play", ["huge_declared", "huge_undeclared"])
def test_a_body_over_the_size_limit_is_a_failed_attempt(server, play):
    """Finding 4: a reply body larger than max_body_bytes is refused, not read into memory."""
    srv = server([play, play])
    c = _client(srv.base_url, max_retries=1, max_body_bytes=100_000)
    r = c.complete(MSGS)
    assert not r.ok and r.error == "too_large" and r.attempts == 2
    assert c.report()["error:too_large"] == 2


def test_retry_after_is_honoured_and_capped(server):
    """Finding 2: `Retry-After: 1` waits at least 1 s before the retry (the back-off alone is 0.01 s);
    a Retry-After of an hour is capped by max_retry_after."""
    srv = server(["retry_after:1"])
    r = _client(srv.base_url).complete(MSGS)
    assert r.ok and r.attempts == 2
    gap = srv.arrivals[1] - srv.arrivals[0]
    assert 0.95 <= gap < 3, gap
    srv2 = server(["retry_after:3600"])
    t0 = time.monotonic()
    r = _client(srv2.base_url, max_retry_after=0.3).complete(MSGS)
    assert r.ok and 0.28 <= srv2.arrivals[1] - srv2.arrivals[0] and time.monotonic() - t0 < 3


def test_retry_after_forms():
    from probsae.interp.llm_client import retry_after_seconds

    assert retry_after_seconds("5") == 5.0 and retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0   # in the past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None and retry_after_seconds("-3") == 0.0


@pytest.mark.parametrize("url", ["file:///{tmp}/v1", "ftp://127.0.0.1/v1", "localhost:8000/v1", "http:///v1",
                                 "http://user:pw@127.0.0.1/v1"])
def test_only_http_urls_are_accepted(tmp_path, url):
    """Finding 6: a file:// endpoint (which urllib would read from disk) and other non-http URLs
    are a ConfigError naming the URL."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "chat").mkdir()
    (tmp_path / "v1" / "chat" / "completions").write_bytes(bad_http.GOOD)
    url = url.format(tmp=tmp_path)
    with pytest.raises(ConfigError, match="URL"):
        _client(url).complete(MSGS)


def test_sigint_stops_sending_at_once(server, sigint_default):
    """Finding 5: Ctrl-C during complete_many cancels the queue and cuts off the requests in
    flight: the server receives only the 2 requests in flight, and the call returns at once."""
    srv = server([], hold_s=1.0)
    c = _client(srv.base_url, timeout=5.0, concurrency=2)
    sent = {}

    def interrupt():
        t_end = time.monotonic() + 5
        while srv.n_requests < 2 and time.monotonic() < t_end:
            time.sleep(0.01)
        sent["t"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        c.complete_many([([{"role": "user", "content": f"q{i}"}], {}) for i in range(12)])
    took = time.monotonic() - sent["t"]
    assert took < 0.5, f"complete_many returned {took:.1f} s after SIGINT"
    time.sleep(1.3)  # longer than a request is held: a worker that kept going would have sent its next one
    assert srv.n_requests == 2 and c.stopped
    r = c.complete(MSGS)
    assert not r.ok and r.error == "interrupted" and srv.n_requests == 2


def test_the_environment_http_proxy_is_used_like_urllib_did(server, monkeypatch):
    """The client moved from urllib to http.client: an http_proxy from the environment still
    carries the request (absolute URL, Proxy-Authorization), and no_proxy still bypasses it."""
    proxy = server([])
    for k in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("http_proxy", f"http://u:p%40ss@127.0.0.1:{proxy.port}")
    r = _client("http://llm.invalid:8000/v1").complete(MSGS)
    assert r.ok and proxy.n_requests == 1
    head = proxy.heads[0].decode()
    assert head.startswith("POST http://llm.invalid:8000/v1/chat/completions HTTP/1.1")
    assert "Proxy-Authorization: Basic dTpwQHNz" in head      # base64("u:p@ss")
    direct = server([])
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert _client(direct.base_url).complete(MSGS).ok
    assert direct.heads[0].startswith(b"POST /v1/chat/completions ") and proxy.n_requests == 1


@pytest.mark.parametrize("field,value", [("timeout", float("inf")), ("timeout", float("nan")), ("timeout", 0),
                                         ("max_retry_after", float("inf")), ("max_body_bytes", 0)])
def test_limits_must_be_finite_and_positive(field, value):
    with pytest.raises(ConfigError, match="LLM"):
        _client("http://127.0.0.1:9/v1", **{field: value})

"""A small, dependency-free client for OpenAI-compatible chat-completions endpoints
(vLLM ``--api-server``, OpenAI, OpenRouter, llama.cpp server, ...).

Standard library only: ``http.client`` for HTTP and a thread pool for concurrency (why not
requests/httpx: docs/ARCHITECTURE.md). The policy (docs/INTERP.md "LLM client"):

* Each HTTP attempt has a **total deadline** of ``timeout`` seconds, covering connecting, sending,
  waiting and reading the whole reply: a watchdog shuts the socket down when it passes, so a server
  that trickles a byte at a time cannot hold a request open (a socket timeout alone restarts at
  every byte).
* A reply body longer than ``max_body_bytes`` (declared by ``Content-Length`` or received) is not
  read further: a failed attempt ``error:too_large``.
* Retried with exponential back-off: timeouts, connection errors, every ``http.client``
  protocol error (a truncated body, a garbage status line, an over-long header line:
  ``error:protocol``), HTTP 408/409/425/429/5xx, bodies over the size limit and bodies that are not
  a chat completion. A ``Retry-After`` header (seconds or an HTTP date) on a retried status sets the
  wait (at least the back-off, at most ``max_retry_after``). A request that still fails returns a
  :class:`ChatResult` with ``text=None`` and an ``error`` kind; nothing is raised.
* Two answers mean every further request would fail the same way, so they raise
  :class:`LLMEndpointError` (a ``ProbSAEError``: exit 2 on the command line) at once: HTTP 401/403
  (the API key is missing or refused) and a redirect.
* :meth:`ChatClient.stop` (called by :meth:`ChatClient.complete_many` when it is interrupted, e.g.
  by Ctrl-C) sends nothing more: queued requests are cancelled, the ones in flight are cut off and
  back-off waits end at once.

Successful replies are cached on disk, keyed by (model, messages, params), so a rerun does not pay
twice.

Redirects are never followed: the client sends the API key in an ``Authorization`` header, and
a redirect (even to the same host) could hand it, and the request, to a server the user did not
configure. Configure the final endpoint URL instead. Only ``http://`` and ``https://`` endpoint
URLs are accepted.

Configuration (:meth:`LLMConfig.from_env`): ``PROBSAE_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``),
``PROBSAE_LLM_MODEL``, ``PROBSAE_LLM_API_KEY`` (or ``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import math
import os
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ProbSAEError
from ..io import atomic_write_text

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
DEFAULT_MAX_BODY_BYTES = 8 * 2**20
"""Largest reply body read by default: 8 MiB (a chat completion of a few hundred tokens is a few KB)."""
DEFAULT_MAX_RETRY_AFTER = 60.0
"""Longest wait a ``Retry-After`` header may impose by default, in seconds."""
_CHUNK = 64 * 1024


@dataclass
class LLMConfig:
    base_url: str | None = None
    """Endpoint root, e.g. ``http://localhost:8000/v1`` or ``https://api.openai.com/v1`` (http or https only)."""
    model: str | None = None
    """Model name sent in each request."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer <key>`` (None: no header)."""
    timeout: float = 60.0
    """Total seconds per HTTP attempt: connecting, sending, waiting and reading the whole reply."""
    max_retries: int = 4
    """Retries after the first attempt."""
    backoff: float = 1.0
    """First back-off delay in seconds (doubles each retry, with jitter, capped at ``max_backoff``)."""
    max_backoff: float = 30.0
    """Longest back-off delay in seconds."""
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    """Longest wait in seconds that a server's ``Retry-After`` header may ask for (a longer one is cut to this)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest reply body read, in bytes; a longer one is a failed attempt (``error:too_large``)."""
    concurrency: int = 8
    """Requests in flight at once."""
    cache_dir: str | None = None
    """Directory of the on-disk response cache (None: no cache)."""
    max_tokens: int = 256
    """Default ``max_tokens`` of a request."""
    max_tokens_limit: int | None = None
    """Upper bound on every request's ``max_tokens`` (None: what each request asks; explanations ask
    400, detection answers 64). For a slow local model that does not stop by itself."""
    extra_headers: dict[str, str] = field(default_factory=dict)
    """Further HTTP headers sent with every request."""

    @classmethod
    def from_env(cls, **overrides: Any) -> "LLMConfig":
        env = os.environ
        cfg = cls(base_url=env.get("PROBSAE_LLM_BASE_URL") or env.get("OPENAI_BASE_URL"),
                  model=env.get("PROBSAE_LLM_MODEL"),
                  api_key=env.get("PROBSAE_LLM_API_KEY") or env.get("OPENAI_API_KEY")
                  or env.get("OPENROUTER_API_KEY"))
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    def validate(self) -> None:
        if not self.base_url:
            raise ConfigError("no LLM endpoint: set PROBSAE_LLM_BASE_URL (e.g. http://localhost:8000/v1) "
                              "or pass --llm-base-url; or use --explainer top-tokens --scorer embedding offline")
        endpoint_parts(self.base_url)
        if not self.model:
            raise ConfigError("no LLM model name: set PROBSAE_LLM_MODEL or pass --llm-model")
        if self.concurrency < 1 or self.max_retries < 0 or not 0 < self.timeout < math.inf:
            raise ConfigError(f"LLM concurrency must be ≥ 1, retries ≥ 0 and timeout a finite number > 0 "
                              f"(got {self.concurrency}, {self.max_retries}, {self.timeout})")
        if self.max_tokens_limit is not None and self.max_tokens_limit < 1:
            raise ConfigError(f"LLM max_tokens_limit must be ≥ 1 (got {self.max_tokens_limit})")
        if self.max_body_bytes < 1 or not all(0 <= x < math.inf for x in (self.max_retry_after, self.backoff,
                                                                         self.max_backoff)):
            raise ConfigError("LLM max_body_bytes must be ≥ 1, and max_retry_after, backoff and max_backoff "
                              "finite numbers ≥ 0")


def endpoint_parts(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path of ``/chat/completions``) of an endpoint root; anything but an
    ``http://`` or ``https://`` URL with a host is a :class:`ConfigError`."""
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"the LLM endpoint URL {base_url!r} is not a valid URL ({e})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the LLM endpoint URL (--llm-base-url / PROBSAE_LLM_BASE_URL) must be an http:// or "
                          f"https:// URL with a host, e.g. http://localhost:8000/v1; got {base_url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"the LLM endpoint URL {base_url!r} holds a user name or password; pass the API key "
                          "through PROBSAE_LLM_API_KEY (or --llm-api-key-env) instead")
    scheme = parts.scheme.lower()
    path = parts.path.rstrip("/") + "/chat/completions" + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def proxy_for(scheme: str, host: str) -> tuple[str, int, dict[str, str]] | None:
    """The HTTP proxy that ``urllib`` would use for ``scheme://host`` (``http_proxy``,
    ``https_proxy``, ``no_proxy`` …): (proxy host, port, headers for it), or None for a direct
    connection. Only ``http://`` proxies are supported (as by ``urllib``)."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    headers = {}
    if parts.username:
        cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    return parts.hostname, port, headers


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None if absent or unreadable. Never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, secs) if math.isfinite(secs) else None


@dataclass
class ChatResult:
    text: str | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None


class _Failed(Exception):
    """A failed attempt: ``kind`` is counted as ``error:<kind>``; ``retry`` says whether another
    attempt may succeed; ``retry_after`` is the server's requested wait (seconds), if any."""

    def __init__(self, kind: str, retry: bool = True, retry_after: float | None = None):
        super().__init__(kind)
        self.kind, self.retry, self.retry_after = kind, retry, retry_after


class LLMEndpointError(ProbSAEError):
    """The endpoint refused the credentials or redirected: no request can succeed."""


class ChatClient:
    """Thread-safe chat-completions client with retries, back-off, deadlines and a response cache.

    ``stats`` counts ``requests`` (HTTP attempts), ``cache_hits``, ``retries``, ``failures``
    and failure kinds (``error:timeout``, ``error:http_500``, ``error:malformed``,
    ``error:protocol``, ``error:too_large`` ...)."""

    def __init__(self, cfg: LLMConfig):
        cfg.validate()
        self.cfg = cfg
        self._scheme, self._host, self._port, self._path = endpoint_parts(cfg.base_url)  # type: ignore[arg-type]
        self._proxy = proxy_for(self._scheme, self._host)
        self._target = self._path  # the request target: the absolute URL through a plain-HTTP proxy
        if self._proxy is not None and self._scheme == "http":
            host = f"[{self._host}]" if ":" in self._host else self._host
            self._target = f"http://{host}:{self._port}{self._path}"
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._live: set[http.client.HTTPConnection] = set()
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    # ---- cache ------------------------------------------------------------------------------
    def cache_key(self, messages: Sequence[dict], params: dict) -> str:
        blob = json.dumps({"model": self.cfg.model, "messages": list(messages), "params": params},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cache_get(self, key: str) -> str | None:
        p = self._cache_path(key)
        if p is None or not p.is_file():
            return None
        try:
            text = json.loads(p.read_text())["text"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # an unreadable or foreign cache entry is a miss: the request is made again
        return text if isinstance(text, str) else None

    def _cache_put(self, key: str, messages: Sequence[dict], params: dict, text: str) -> None:
        p = self._cache_path(key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, json.dumps({"model": self.cfg.model, "params": params, "messages": list(messages),
                                         "text": text}, ensure_ascii=False))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # ---- requests ---------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Send nothing more: later attempts are not made, back-off waits end, and the requests in
        flight are cut off (their sockets shut down). Cannot be undone."""
        self._stopped.set()
        with self._lock:
            live = list(self._live)
        for conn in live:
            _shut(conn)

    def complete(self, messages: Sequence[dict], **params: Any) -> ChatResult:
        """One chat completion. ``params`` (temperature, max_tokens, ...) go into the request body."""
        params = {"max_tokens": self.cfg.max_tokens, **params}
        if self.cfg.max_tokens_limit is not None:
            params["max_tokens"] = min(params["max_tokens"], self.cfg.max_tokens_limit)
        key = self.cache_key(messages, params)
        hit = self._cache_get(key)
        if hit is not None:
            self._count("cache_hits")
            return ChatResult(hit, cached=True)
        body = json.dumps({"model": self.cfg.model, "messages": list(messages), **params}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.cfg.extra_headers}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        err = "unknown"
        attempts = 0
        wait_after: float | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                delay = min(self.cfg.max_backoff, self.cfg.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                if wait_after is not None:
                    delay = max(delay, min(wait_after, self.cfg.max_retry_after))
                if self._stopped.wait(delay):
                    err = "interrupted"
                    break
                self._count("retries")
            if self._stopped.is_set():
                err = "interrupted"
                break
            attempts += 1
            self._count("requests")
            try:
                text = self._parse(self._post(body, headers))
            except _Failed as f:
                err, wait_after = f.kind, f.retry_after
                if err == "interrupted":
                    break
                self._count(f"error:{err}")
                if not f.retry:
                    break
                continue
            self._cache_put(key, messages, params, text)
            self._count("ok")
            return ChatResult(text, attempts=attempts)
        self._count("failures")
        return ChatResult(None, error=err, attempts=attempts)

    def _connection(self) -> tuple[http.client.HTTPConnection, dict[str, str]]:
        """A connection to the endpoint (through the environment's proxy, if any) and the headers
        that proxy needs."""
        https = self._scheme == "https"
        cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
        if self._proxy is None:
            return cls(self._host, self._port, timeout=self.cfg.timeout), {}
        host, port, proxy_headers = self._proxy
        conn = cls(host, port, timeout=self.cfg.timeout)
        if https:  # CONNECT tunnel: the proxy sees neither the request nor the key
            conn.set_tunnel(self._host, self._port, headers=proxy_headers or None)
            return conn, {}
        return conn, proxy_headers

    def _post(self, body: bytes, headers: dict[str, str]) -> bytes:
        """One HTTP attempt within the total deadline; the reply body, or :class:`_Failed`."""
        deadline = time.monotonic() + self.cfg.timeout
        conn, proxy_headers = self._connection()
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            _shut(conn)

        watchdog = threading.Timer(self.cfg.timeout, cut)
        watchdog.daemon = True
        with self._lock:
            self._live.add(conn)
        watchdog.start()
        try:
            conn.connect()
            if self._stopped.is_set():  # stopped while connecting: send nothing
                raise _Failed("interrupted", retry=False)
            conn.request("POST", self._target, body=body, headers={**headers, **proxy_headers})
            resp = conn.getresponse()
            self._check_status(resp)
            size = resp.getheader("Content-Length")
            if size is not None and size.strip().isdigit() and int(size) > self.cfg.max_body_bytes:
                raise _Failed("too_large")
            chunks: list[bytes] = []
            n = 0
            while True:
                if time.monotonic() > deadline:
                    raise _Failed("timeout")
                chunk = resp.read1(_CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if n > self.cfg.max_body_bytes:
                    raise _Failed("too_large")
                chunks.append(chunk)
            if expired.is_set():  # cut off by the watchdog: what arrived may be incomplete
                raise _Failed("timeout")
            if resp.length:  # the connection closed before the declared Content-Length arrived
                raise _Failed("protocol")
            return b"".join(chunks)
        except (_Failed, ProbSAEError):
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:
            # every transport failure: refused/reset connections, socket timeouts, TLS errors, and
            # http.client's protocol errors (IncompleteRead, BadStatusLine, LineTooLong, too many
            # headers, a bad chunk size) -- a counted, retried failure, never a traceback
            if self._stopped.is_set():
                raise _Failed("interrupted", retry=False) from None
            if expired.is_set() or isinstance(e, (TimeoutError, socket.timeout)):
                raise _Failed("timeout") from None
            if isinstance(e, (http.client.HTTPException, ValueError)) and not isinstance(e, ConnectionError):
                raise _Failed("protocol") from None
            raise _Failed("connection") from None
        finally:
            watchdog.cancel()
            with self._lock:
                self._live.discard(conn)
            conn.close()

    def _check_status(self, resp: http.client.HTTPResponse) -> None:
        code = resp.status
        if 200 <= code < 300:
            return
        if code in (401, 403):
            self._count(f"error:http_{code}")
            raise LLMEndpointError(
                f"the LLM endpoint {self.url} answered HTTP {code} ({resp.reason}): the API key is "
                f"{'missing' if not self.cfg.api_key else 'not accepted'} (set PROBSAE_LLM_API_KEY or pass "
                "--llm-api-key-env)")
        if 300 <= code < 400:
            self._count(f"error:http_{code}")
            raise LLMEndpointError(
                f"the LLM endpoint {self.url} answered with a redirect (HTTP {code}) to "
                f"{resp.getheader('Location')!r}; probsae does not follow redirects, so that the API key is never sent to "
                "another server: set the endpoint URL (--llm-base-url / PROBSAE_LLM_BASE_URL) to the final address")
        raise _Failed(f"http_{code}", retry=code in RETRY_STATUS,
                      retry_after=retry_after_seconds(resp.getheader("Retry-After")))

    @staticmethod
    def _parse(raw: bytes) -> str:
        try:
            obj = json.loads(raw)
            content = obj["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Failed("malformed") from None
        if not isinstance(content, str):
            raise _Failed("malformed")
        return content

    def complete_many(self, requests: Sequence[tuple[Sequence[dict], dict]], desc: str | None = None) -> list[ChatResult]:
        """Run ``(messages, params)`` requests concurrently; results in input order. With ``desc``,
        a progress bar shows requests/s, cache hits, retries and failures so far. Anything raised
        while waiting (Ctrl-C's ``KeyboardInterrupt``, :class:`LLMEndpointError`) stops the client
        (:meth:`stop`: nothing more is sent, requests in flight are cut off) before it propagates."""
        from ..progress import bar as progress_bar

        if not requests:
            return []
        out: list[ChatResult | None] = [None] * len(requests)
        ex = ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(requests)))
        try:
            with progress_bar(total=len(requests), desc=desc or "LLM requests", unit="req",
                              requested=desc is not None) as bar:
                futures = {ex.submit(self.complete, m, **p): i for i, (m, p) in enumerate(requests)}
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    st = self.report()
                    bar.set_postfix_str(f"cached {st.get('cache_hits', 0)} · retries {st.get('retries', 0)} · "
                                        f"failed {st.get('failures', 0)}", refresh=False)
                    bar.update(1)
        except BaseException:
            self.stop()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            ex.shutdown(wait=True)
        return out  # type: ignore[return-value]

    def report(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)


def _shut(conn: http.client.HTTPConnection) -> None:
    """Shut a connection's socket down from another thread, so a blocked read returns at once."""
    sock = conn.sock
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass

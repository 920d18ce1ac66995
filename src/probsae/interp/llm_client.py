"""A small, dependency-free client for OpenAI-compatible chat-completions endpoints
(vLLM ``--api-server``, OpenAI, OpenRouter, llama.cpp server, ...).

Standard library only: ``urllib`` for HTTP and a thread pool for concurrency. Every request is
retried with exponential back-off on timeouts, connection errors, HTTP 408/409/429/5xx and
malformed response bodies; a request that still fails returns a :class:`ChatResult` with
``text=None`` and an ``error`` string. Two answers mean every further request would fail the
same way, so they raise :class:`LLMEndpointError` (a ``ProbSAEError``: exit 2 on the command
line) at once: HTTP 401/403 (the API key is missing or refused) and a redirect. Successful
replies are cached on disk, keyed by (model, messages, params), so a rerun does not pay twice.

Redirects are never followed: the client sends the API key in an ``Authorization`` header, and
a redirect (even to the same host) could hand it, and the request, to a server the user did not
configure. Configure the final endpoint URL instead.

Configuration (:meth:`LLMConfig.from_env`): ``PROBSAE_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``),
``PROBSAE_LLM_MODEL``, ``PROBSAE_LLM_API_KEY`` (or ``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import threading
import time
import urllib.error
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


@dataclass
class LLMConfig:
    base_url: str | None = None
    """Endpoint root, e.g. ``http://localhost:8000/v1`` or ``https://api.openai.com/v1``."""
    model: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    """Seconds per HTTP request."""
    max_retries: int = 4
    """Retries after the first attempt."""
    backoff: float = 1.0
    """First back-off delay in seconds (doubles each retry, with jitter, capped at ``max_backoff``)."""
    max_backoff: float = 30.0
    concurrency: int = 8
    """Requests in flight at once."""
    cache_dir: str | None = None
    """Directory of the on-disk response cache (None: no cache)."""
    max_tokens: int = 256
    extra_headers: dict[str, str] = field(default_factory=dict)

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
        if not self.model:
            raise ConfigError("no LLM model name: set PROBSAE_LLM_MODEL or pass --llm-model")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout <= 0:
            raise ConfigError("LLM concurrency must be ≥ 1, retries ≥ 0 and timeout > 0")


@dataclass
class ChatResult:
    text: str | None
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None


class _Malformed(Exception):
    pass


class LLMEndpointError(ProbSAEError):
    """The endpoint refused the credentials or redirected: no request can succeed."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an HTTPError instead of following it (with the Authorization header)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class ChatClient:
    """Thread-safe chat-completions client with retries, back-off and a response cache.

    ``stats`` counts ``requests`` (HTTP attempts), ``cache_hits``, ``retries``, ``failures``
    and failure kinds (``error:timeout``, ``error:http_500``, ``error:malformed`` ...)."""

    def __init__(self, cfg: LLMConfig):
        cfg.validate()
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
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
    def complete(self, messages: Sequence[dict], **params: Any) -> ChatResult:
        """One chat completion. ``params`` (temperature, max_tokens, ...) go into the request body."""
        params = {"max_tokens": self.cfg.max_tokens, **params}
        key = self.cache_key(messages, params)
        hit = self._cache_get(key)
        if hit is not None:
            self._count("cache_hits")
            return ChatResult(hit, cached=True)
        body = json.dumps({"model": self.cfg.model, "messages": list(messages), **params}).encode()
        headers = {"Content-Type": "application/json", **self.cfg.extra_headers}
        if self.cfg.api_key:
            headers["Authorization"] = f"Bearer {self.cfg.api_key}"
        err = "unknown"
        attempts = 0
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self._count("retries")
                delay = min(self.cfg.max_backoff, self.cfg.backoff * 2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random() / 2))
            attempts += 1
            self._count("requests")
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with _OPENER.open(req, timeout=self.cfg.timeout) as resp:
                    raw = resp.read()
                text = self._parse(raw)
                self._cache_put(key, messages, params, text)
                self._count("ok")
                return ChatResult(text, attempts=attempts)
            except urllib.error.HTTPError as e:
                err = f"http_{e.code}"
                self._fatal(e)
                if e.code not in RETRY_STATUS:
                    break
            except (TimeoutError, socket.timeout):
                err = "timeout"
            except urllib.error.URLError as e:
                err = "timeout" if isinstance(e.reason, (TimeoutError, socket.timeout)) else "connection"
            except _Malformed:
                err = "malformed"
            except (ConnectionError, OSError):
                err = "connection"
            self._count(f"error:{err}")
        self._count("failures")
        return ChatResult(None, error=err, attempts=attempts)

    def _fatal(self, e: urllib.error.HTTPError) -> None:
        if e.code in (401, 403):
            self._count(f"error:http_{e.code}")
            raise LLMEndpointError(
                f"the LLM endpoint {self.url} answered HTTP {e.code} ({e.reason}): the API key is "
                f"{'missing' if not self.cfg.api_key else 'not accepted'} (set PROBSAE_LLM_API_KEY or pass "
                "--llm-api-key-env)")
        if 300 <= e.code < 400:
            self._count(f"error:http_{e.code}")
            raise LLMEndpointError(
                f"the LLM endpoint {self.url} answered with a redirect (HTTP {e.code}) to "
                f"{(e.headers or {}).get('Location')!r}; probsae does not follow redirects, so that the API key is never sent to "
                "another server: set the endpoint URL (--llm-base-url / PROBSAE_LLM_BASE_URL) to the final address")

    @staticmethod
    def _parse(raw: bytes) -> str:
        try:
            obj = json.loads(raw)
            content = obj["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Malformed(str(e)) from None
        if not isinstance(content, str):
            raise _Malformed("content is not a string")
        return content

    def complete_many(self, requests: Sequence[tuple[Sequence[dict], dict]], desc: str | None = None) -> list[ChatResult]:
        """Run ``(messages, params)`` requests concurrently; results in input order. With ``desc``,
        a progress bar shows requests/s, cache hits, retries and failures so far."""
        from ..progress import bar as progress_bar

        if not requests:
            return []
        out: list[ChatResult | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(requests))) as ex, \
                progress_bar(total=len(requests), desc=desc or "LLM requests", unit="req", requested=desc is not None) as bar:
            futures = {ex.submit(self.complete, m, **p): i for i, (m, p) in enumerate(requests)}
            for fut in as_completed(futures):
                try:
                    out[futures[fut]] = fut.result()
                except LLMEndpointError:  # refused credentials or a redirect: send nothing more
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
                st = self.report()
                bar.set_postfix_str(f"cached {st.get('cache_hits', 0)} · retries {st.get('retries', 0)} · "
                                    f"failed {st.get('failures', 0)}", refresh=False)
                bar.update(1)
        return out  # type: ignore[return-value]

    def report(self) -> dict[str, int]:
        with self._lock:
            return dict(self.stats)

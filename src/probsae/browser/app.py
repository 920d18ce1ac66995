"""The live browser's web app (FastAPI, served by uvicorn) and how it is started.

Routes (all GET, HTML): ``/`` (encode typed text: ``?text=&latent=``), ``/latent/{id}``,
``/search?q=`` and ``/steer?latent=&strength=&prompt=&max_new_tokens=``. A bad request (a latent
out of range, text too long, steering an encoder) is a page naming the problem (status 400 or
404), never a 500. There is no authentication, so the server binds a loopback address unless the
user says otherwise (:class:`ServeConfig`).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..errors import ConfigError
from . import pages
from .state import Browser

DEFAULT_PROMPT = "The weather today is"


@dataclass
class ServeConfig:
    """Where the browser listens."""

    host: str = "127.0.0.1"
    """Address to bind (loopback by default; anything else needs allow_remote)."""
    port: int = 8765
    """TCP port (0: any free port)."""
    allow_remote: bool = False
    """Bind a non-loopback address: the browser has no authentication, so anyone who can reach the
    port can read the run's texts and run the model."""

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(f"host {self.host!r} is not a loopback address: the browser has no authentication, "
                              "so it binds 127.0.0.1 unless you pass --allow-remote")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(browser: Browser):
    """The FastAPI app over one :class:`Browser`."""
    from ..extras import require

    require("serve")
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="probsae browser", docs_url=None, redoc_url=None, openapi_url=None)
    label = f"{browser.run.path.name} · {browser.run.metadata.model_name} · {browser.run.hook} · " \
            f"{browser.cache.n_windows:,} windows × {browser.cache.window_len} tokens"

    def html(title: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(pages.page(title, label, body), status_code=status)

    def latent_arg(value: str | None) -> int | None:
        if value is None or not value.strip():
            return None
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"latent must be a whole number, got {value!r}") from None

    @app.get("/", response_class=HTMLResponse)
    def home(text: str = "", latent: str | None = None):
        try:
            chosen = latent_arg(latent)
            body = pages.text_form(text, chosen) + (pages.encoded(browser.encode(text, chosen)) if text.strip() else "")
        except ConfigError as e:
            return html("probsae browser", pages.text_form(text) + pages.error(str(e)), 400)
        return html("probsae browser", body)

    @app.get("/latent/{latent}", response_class=HTMLResponse)
    def latent_page(latent: int):
        try:
            d = browser.latent(latent)
        except ConfigError as e:
            return html("no such latent", pages.error(str(e)), 404)
        return html(f"latent {latent}", pages.latent_page(d, browser.explanation(latent), browser.is_causal))

    @app.get("/search", response_class=HTMLResponse)
    def search(q: str = "", limit: int = 200):
        return html(f"search {q}", pages.search_page(q, browser.search(q), max(1, limit)))

    @app.get("/steer", response_class=HTMLResponse)
    def steer(latent: str | None = None, strength: float = 4.0, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 20):
        try:
            chosen = latent_arg(latent)
        except ConfigError as e:
            return html("steer", pages.error(str(e)), 400)
        form = pages.steer_form(chosen, strength, prompt, max_new_tokens)
        if not browser.is_causal:
            return html("steer", form + pages.error(f"steering needs a causal LM: {browser.run.metadata.model_name} "
                                                    "is an encoder (it generates no text)"))
        if chosen is None:
            return html("steer", form)
        try:
            out, m = browser.steer(chosen, strength, prompt, max_new_tokens)
        except ConfigError as e:
            return html("steer", form + pages.error(str(e)), 400)
        summary = pages.latent_summary(browser.latent(chosen), browser.index_row(chosen))
        return html(f"steer latent {chosen}", form + summary + pages.steered(out, m, strength))

    return app


def bind(cfg: ServeConfig) -> socket.socket:
    """A listening socket at ``cfg.host:cfg.port`` (validated first); a port in use or an address
    that cannot be bound is a :class:`ConfigError` naming it."""
    cfg.validate()
    try:
        info = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None
    return sock


def server(browser: Browser):
    """A ``uvicorn.Server`` for the app: ``.run(sockets=[bind(cfg)])`` blocks until Ctrl-C (or
    ``should_exit``), then shuts down cleanly."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(create_app(browser), log_level="warning", access_log=False))

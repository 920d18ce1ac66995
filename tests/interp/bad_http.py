"""A misbehaving HTTP server on 127.0.0.1 for the LLM client's fault tests.

It speaks raw bytes over TCP (not ``http.server``), so it can break the protocol on purpose. Each
accepted connection plays the next entry of ``plays`` (a name, see :meth:`BadHTTP.play`); when the
list is used up it answers with a valid chat completion. Every loop is bounded in count and time,
and the server stops by itself after ``lifetime_s``.
"""

from __future__ import annotations

import json
import socket
import threading
import time

GOOD = json.dumps({"choices": [{"message": {"role": "assistant", "content": "[1, 0]"}}]}).encode()


def _response(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class BadHTTP:
    def __init__(self, plays: list[str], *, hold_s: float = 0.0, hold_from: int = 0, lifetime_s: float = 20.0):
        self.plays = list(plays)
        self.hold_s = hold_s
        """Seconds a request waits before it is answered (bounded; ends when the server stops)..."""
        self.hold_from = hold_from
        """... from the ``hold_from``-th request on (0-based; the ones before are answered at once)."""
        self.arrivals: list[float] = []
        self.heads: list[bytes] = []
        """The request line and headers of each request received."""
        self.bytes_sent = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.deadline = time.monotonic() + lifetime_s
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def n_requests(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _alive(self) -> bool:
        return not self.done.is_set() and time.monotonic() < self.deadline

    def _serve(self) -> None:
        while self._alive():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bool:
        conn.settimeout(2.0)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        with self.lock:
            self.heads.append(head)
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        while len(body) < n:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self.lock:
            self.bytes_sent += len(data)

    def _handle(self, conn: socket.socket) -> None:
        try:
            if not self._read_request(conn):
                return
            with self.lock:
                self.arrivals.append(time.monotonic())
                held = len(self.arrivals) > self.hold_from
                play = self.plays.pop(0) if self.plays else "good"
            t_end = time.monotonic() + (self.hold_s if held else 0.0)
            while time.monotonic() < t_end and self._alive():
                time.sleep(0.02)
            self.play(conn, play)
        except OSError:
            pass  # the client cut the connection off
        finally:
            conn.close()

    def _drip(self, conn: socket.socket, data: bytes, every_s: float = 0.05) -> None:
        for i in range(len(data)):       # bounded by len(data) and by the server's lifetime
            if not self._alive():
                return
            self._send(conn, data[i:i + 1])
            time.sleep(every_s)

    def play(self, conn: socket.socket, name: str) -> None:
        if name == "good":
            self._send(conn, _response("200 OK", GOOD))
        elif name == "truncated":                 # Content-Length 500, 20 bytes, then close: IncompleteRead
            self._send(conn, _response("200 OK", GOOD)[: -len(GOOD)].replace(
                f"Content-Length: {len(GOOD)}".encode(), b"Content-Length: 500") + GOOD[:20])
        elif name == "bad_status":                # BadStatusLine
            self._send(conn, b"GARBAGE\r\n\r\n")
        elif name == "long_header":               # a 70 KB header line: LineTooLong
            self._send(conn, b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
        elif name == "bad_chunk":                 # chunked body with a chunk size that is not hex
            self._send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
        elif name == "drip_body":                 # headers at once, then one body byte every 0.05 s (~6 s)
            body = GOOD + b" " * 60
            whole = _response("200 OK", body)
            self._send(conn, whole[: -len(body)])
            self._drip(conn, body)
        elif name == "drip_head":                 # the status line and headers one byte every 0.05 s
            self._drip(conn, _response("200 OK", GOOD))
        elif name == "huge_declared":             # declares 300 MB, sends 1 MB at most
            head = _response("200 OK", b"").replace(b"Content-Length: 0", b"Content-Length: 300000000")
            self._send(conn, head)
            for _ in range(16):
                if not self._alive():
                    return
                self._send(conn, b" " * 65536)
        elif name == "huge_undeclared":           # no Content-Length: 64 KB pieces until closed (at most 8 MB)
            self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            for _ in range(128):
                if not self._alive():
                    return
                self._send(conn, b" " * 65536)
        elif name.startswith("retry_after:"):     # 429 with Retry-After: <value>
            self._send(conn, _response("429 Too Many Requests", b'{"error": "slow down"}',
                                       f"Retry-After: {name.split(':', 1)[1]}"))
        else:
            raise ValueError(name)

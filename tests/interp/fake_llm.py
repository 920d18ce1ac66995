"""A real HTTP server on 127.0.0.1 speaking the chat-completions protocol, for the interp tests.

It plays a sensible model (explanations name the most active token; detection answers 1 when the
explained token occurs in an excerpt) and misbehaves on purpose, deterministically:

* the 1st request it receives is answered only after ``slow_s`` seconds (the client times out and retries);
* the 2nd gets HTTP 500, the 3rd a body that is not JSON (both retried);
* detection prompts whose body hash is ≡ 0 mod ``malformed_mod`` get a reply that is not a 0/1 list
  (a content-level failure the scorer must count, not crash on).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    def __init__(self, slow_s: float = 1.5, malformed_mod: int = 4):
        self.slow_s = slow_s
        self.malformed_mod = malformed_mod
        self.lock = threading.Lock()
        self.n_requests = 0
        self.kinds: dict[str, int] = {}
        self.bodies: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(n)
                with fake.lock:
                    fake.n_requests += 1
                    idx = fake.n_requests
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                body = json.loads(raw)
                with fake.lock:
                    fake.bodies.append(body)
                if idx == 1:
                    fake._count("slow")
                    time.sleep(fake.slow_s)
                elif idx == 2:
                    fake._count("http500")
                    return self._send(500, b'{"error": "overloaded"}')
                elif idx == 3:
                    fake._count("badjson")
                    return self._send(200, b'{"choices": [ this is not json')
                text = fake.reply(body, raw)
                out = {"id": f"fake-{idx}", "object": "chat.completion", "model": body.get("model"),
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}]}
                self._send(200, json.dumps(out).encode())

            def _send(self, code: int, data: bytes):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _count(self, k: str) -> None:
        with self.lock:
            self.kinds[k] = self.kinds.get(k, 0) + 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeLLM":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, body: dict, raw: bytes) -> str:
        system = body["messages"][0]["content"]
        user = body["messages"][-1]["content"]
        if "EXPLANATION:" in system:
            self._count("explain")
            m = re.search(r'Most active: "([^"]+)"', user)
            tok = m.group(1) if m else "nothing"
            return f'The marked tokens are mostly "{tok}".\nEXPLANATION: the token "{tok}"'
        self._count("detect")
        if int(hashlib.sha256(raw).hexdigest(), 16) % self.malformed_mod == 0:
            self._count("malformed")
            return "I am not sure about these excerpts."
        m = re.search(r'Explanation: .*?"([^"]+)"', user)
        tok = (m.group(1) if m else "").lower()
        answers = []
        for line in user.splitlines():
            mm = re.match(r"Excerpt \d+: (.*)", line)
            if mm:
                answers.append(1 if tok and tok in mm.group(1).lower() else 0)
        return json.dumps(answers)

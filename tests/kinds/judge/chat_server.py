"""A small local HTTP server speaking the OpenAI chat-completions format, for judge tests.

It grades like a judge would: the candidate is correct when it equals the reference answer in
the prompt (the judge's default prompt puts them on the lines after "Reference answer:" and
"Candidate answer:"). A `script` function can replace any reply — with a 429, a 500, a broken
body — by call number, and every request is recorded (time, body, Authorization header).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, headers, body) — body a dict (sent as JSON) or raw bytes/str (sent as is)
Reply = tuple[int, dict, object]


@dataclass
class Call:
    t: float
    index: int
    body: dict
    auth: str
    status: int = 0  # what the server answered

    @property
    def prompt(self) -> str:
        return self.body["messages"][-1]["content"]

    @property
    def candidate(self) -> str:
        return section(self.prompt, "Candidate answer:")


def section(prompt: str, header: str) -> str:
    return prompt.split(header, 1)[1].strip().split("\n\n", 1)[0].strip()


def completion(content: str, model: str = "judge") -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def grade(call: Call) -> Reply:
    correct = section(call.prompt, "Candidate answer:") == section(call.prompt, "Reference answer:")
    verdict = {"correct": correct, "explanation": "matches the reference" if correct else "differs from the reference"}
    return 200, {}, completion(json.dumps(verdict), call.body.get("model", "judge"))


@dataclass
class ChatServer:
    script: Callable[[Call], Reply | None] | None = None  # None from it: grade normally
    delay_s: float = 0.0
    key: str | None = None  # when set, other Authorization headers get 401
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0  # most requests handled at the same time

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, headers: dict, body: object) -> None:
                data = (
                    body
                    if isinstance(body, bytes)
                    else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
                )
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {}, {"object": "list", "data": [{"id": "judge", "object": "model"}]})
                else:
                    self._send(404, {}, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {}, {"error": {"message": f"no route {self.path}"}})
                with outer.lock:
                    call = Call(time.monotonic(), len(outer.calls), body, self.headers.get("Authorization", ""))
                    outer.calls.append(call)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if outer.delay_s:
                        time.sleep(outer.delay_s)
                    if outer.key is not None and call.auth != f"Bearer {outer.key}":
                        reply: Reply | None = (
                            401,
                            {},
                            {"error": {"message": "invalid api key", "type": "invalid_request_error"}},
                        )
                    else:
                        reply = outer.script(call) if outer.script else None
                    status, headers, out = reply if reply is not None else grade(call)
                    call.status = status
                finally:
                    with outer.lock:
                        outer.in_flight -= 1
                self._send(status, dict(headers), out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

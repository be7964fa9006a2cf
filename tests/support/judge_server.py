"""Real OpenAI-format chat-completions servers on loopback, for the endpoint tests.

:class:`TransformersServe` runs ``transformers serve`` on a model directory in a subprocess, offline.

:class:`MisbehavingChatServer` misbehaves on request. It runs in a thread of the test process (the standard
library's threading HTTP server, one thread per connection) and records what it received: every HTTP request
(headers, their names in lower case, path and body), and the most requests it ever had in flight at once. What
it does is chosen by markers in the request's user text:

* ``[fail-always]``: HTTP 500, every time;
* ``[fail-once]``: HTTP 500 the first time this exact text arrives, then an answer;
* ``[slow=S]``: the answer after ``S`` seconds;
* otherwise the answer at once: ``echo: <text> (<n> images)``, with usage counting the images and words.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TransformersServe:
    """``transformers serve MODEL_DIR`` on 127.0.0.1 at a free port, offline (``HF_HUB_OFFLINE=1``), on the CPU
    with one thread; ``with TransformersServe(model_dir, log_dir) as server:`` waits until ``/health``
    answers, and stops the server's process group after. Requests must name ``model_dir`` as the model."""

    def __init__(self, model_dir: Path, log_dir: Path, timeout: float = 120):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.model, self.timeout = str(model_dir), timeout
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = Path(log_dir) / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> TransformersServe:
        argv = [str(Path(sys.executable).with_name("transformers")), "serve", self.model]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level", "info"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        with open(self.log_path, "wb") as log:  # the server keeps its own copy
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise AssertionError(f"transformers serve exited:\n{self.log()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise AssertionError(f"transformers serve did not answer within {self.timeout} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        """The end of the server's output."""
        return self.log_path.read_text(errors="replace")[-tail:]

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class MisbehavingChatServer:
    """Start with ``with MisbehavingChatServer() as server:``; ``server.base_url`` ends in ``/v1``."""

    def __init__(self):
        self.received: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MisbehavingChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def texts(self) -> list[str]:
        """The user text of every HTTP request received, in arrival order."""
        return [user_text(body) for body in (r["body"] for r in self.received)]

    def answer(self, body: dict) -> tuple[int, dict]:
        """What to send back for ``body``: the status and the JSON."""
        text = user_text(body)
        if "[fail-always]" in text:
            return 500, {"error": {"message": "always failing", "type": "server_error"}}
        if "[fail-once]" in text:
            with self.lock:
                first = text not in self.seen
                self.seen.add(text)
            if first:
                return 500, {"error": {"message": "failing once", "type": "server_error"}}
        slow = re.search(r"\[slow=([\d.]+)\]", text)
        if slow:
            time.sleep(float(slow.group(1)))
        images = sum(
            part.get("type") == "image_url"
            for m in body["messages"]
            if isinstance(m["content"], list)
            for part in m["content"]
        )
        content = f"echo: {text} ({images} images)"
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 100 * images + len(text.split()),
                "completion_tokens": len(content.split()),
                "total_tokens": 100 * images + len(text.split()) + len(content.split()),
            },
        }


def user_text(body: dict) -> str:
    """The text part of the last user message of a chat-completions body."""
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


def _handler(server: MisbehavingChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.received.append({"headers": headers, "path": self.path, "body": body})
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                status, payload = server.answer(body)
            finally:
                with server.lock:
                    server.in_flight -= 1
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def log_message(self, format, *args):
            """Quiet: the tests read ``received``."""

    return Handler

"""The platform served by a real gunicorn process, for tests that need a separate server (outages).

The server reads its database and broker from the environment given to :class:`WebServer`, so a test
can point it at a :class:`tests.support.tcp_proxy.TcpProxy` and take the service away underneath it.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings


class WebServer:
    def __init__(self, root: Path, env: dict):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.root, self.extra_env = root, env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "DJANGO_DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "OMP_NUM_THREADS": "1",
            **self.extra_env,
        }
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-b",
            f"127.0.0.1:{self.port}",
            "-w",
            "1",
            "-k",
            "gthread",
            "--threads",
            "2",
            "--timeout",
            "60",
        ]
        self.log_path = self.root / f"gunicorn-{self.port}.log"
        with open(self.log_path, "wb") as log:  # the server keeps its own copy
            self.proc = subprocess.Popen(
                argv, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log()}")
            try:
                self.request("GET", "/static/css/app.css")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"gunicorn did not answer within {timeout}s:\n{self.log()}")

    def request(
        self, method: str, path: str, *, headers: dict | None = None, body: str | None = None, timeout: float = 30
    ):
        """``(status, headers dict, body bytes)``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

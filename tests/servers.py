"""Real servers for tests: ``app-server serve`` (or ``bokeh serve``) in a subprocess on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningServer", "free_port", "run_app_server", "run_bokeh_serve"]

# lines no server run may log: they mean a coroutine or task was lost
_NEVER = ("was never awaited", "Task was destroyed but it is pending", "Task exception was never")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} did not appear in the server log:\n{self.log()[-3000:]}")


def _wait_until_up(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{server.log()}")
        try:
            urllib.request.urlopen(server.url + "/static/js/bokeh.min.js", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start in {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def _run(
    command: list[str], port: int, env: dict[str, str] | None, prefix: str
) -> Iterator[RunningServer]:
    log_file = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    server = RunningServer(f"http://127.0.0.1:{port}{prefix}", port, process, Path(log_file.name))
    try:
        _wait_until_up(server, timeout=30)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
    problems = [line for line in server.log().splitlines() if any(p in line for p in _NEVER)]
    assert not problems, f"the server logged: {problems}"


@contextlib.contextmanager
def run_app_server(
    *paths: str | Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    prefix: str = "",
) -> Iterator[RunningServer]:
    port = free_port()
    command = [sys.executable, "-m", "app_server.cli", "serve", *map(str, paths)]
    command += ["--port", str(port), "--log-level", "debug", *args]
    if prefix:
        command += ["--prefix", prefix]
    with _run(command, port, env, prefix) as server:
        yield server


@contextlib.contextmanager
def run_bokeh_serve(
    *paths: str | Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Bokeh's own Tornado server, for side-by-side checks."""
    port = free_port()
    command = [sys.executable, "-m", "bokeh", "serve", *map(str, paths), "--port", str(port), *args]
    with _run(command, port, env, "") as server:
        yield server

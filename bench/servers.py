"""The servers under test, each in its own subprocess on a loopback port, and /proc readings."""

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

__all__ = [
    "APPS",
    "SERVERS",
    "RunningServer",
    "ServerKind",
    "available_servers",
    "bokeh_version",
    "run_server",
    "run_servers",
]

APPS_DIR = Path(__file__).resolve().parent / "apps"
APPS = [APPS_DIR / "small.py", APPS_DIR / "heavy.py", APPS_DIR / "stream.py"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ServerKind:
    key: str
    label: str
    deferred_s: float = 0.0  # how long after discarding a session the server may still work

    def command(
        self, port: int, apps: Sequence[Path], check_ms: int, lifetime_ms: int
    ) -> list[str]:
        files = [str(p) for p in apps]
        reap = [
            "--check-unused-sessions",
            str(check_ms),
            "--unused-session-lifetime",
            str(lifetime_ms),
        ]
        if self.key == "app_server":
            if _app_server_has_setting("disconnected_session_lifetime"):
                # app_server keeps a closed tab's session this long (bokeh: the unused lifetime)
                reap += ["--disconnected-session-lifetime", str(lifetime_ms)]
            return [
                sys.executable,
                "-m",
                "app_server.cli",
                "serve",
                *files,
                "--port",
                str(port),
                *reap,
            ]
        if self.key == "bokeh":
            return [sys.executable, "-m", "bokeh", "serve", *files, "--port", str(port), *reap]
        if self.key == "asgi":
            return [sys.executable, "-m", "bench.asgi_launcher", *files, "--port", str(port), *reap]
        raise ValueError(self.key)


def _app_server_has_setting(name: str) -> bool:
    from app_server.settings import Settings

    return name in Settings.model_fields


APP_SERVER = ServerKind("app_server", "app_server", deferred_s=1.1)
BOKEH_SERVE = ServerKind("bokeh", "bokeh serve")
BOKEH_ASGI = ServerKind("asgi", "BokehASGI")
SERVERS = {kind.key: kind for kind in (APP_SERVER, BOKEH_SERVE, BOKEH_ASGI)}


def bokeh_version() -> tuple[int, int]:
    import bokeh

    major, minor = bokeh.__version__.split(".")[:2]
    return int(major), int(minor)


def available_servers() -> list[ServerKind]:
    """app_server and bokeh serve always; BokehASGI when bokeh >= 3.10 is importable."""
    kinds = [APP_SERVER, BOKEH_SERVE]
    if bokeh_version() >= (3, 10):
        kinds.append(BOKEH_ASGI)
    return kinds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    kind: ServerKind
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    closed_at: float = 0.0  # time.monotonic() when the bench last closed sessions here

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads), from /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3 of the man page): utime is field 14, stime 15.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        """VmRSS of the server process, from /proc/<pid>/status."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.kind.label} exited:\n{self.log()[-3000:]}")


def _wait_until_up(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            urllib.request.urlopen(server.base_url + "/static/js/bokeh.min.js", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.kind.label} did not start in {timeout}s:\n{server.log()[-3000:]}")


@contextlib.contextmanager
def run_server(
    kind: ServerKind,
    apps: Sequence[Path] = APPS,
    *,
    check_ms: int = 250,
    lifetime_ms: int = 500,
) -> Iterator[RunningServer]:
    """Start a server on a free loopback port; stop it (SIGTERM, then SIGKILL) afterwards."""
    with run_servers([kind], apps, check_ms=check_ms, lifetime_ms=lifetime_ms) as servers:
        yield servers[0]


@contextlib.contextmanager
def run_servers(
    kinds: Sequence[ServerKind],
    apps: Sequence[Path] = APPS,
    *,
    check_ms: int = 250,
    lifetime_ms: int = 500,
) -> Iterator[list[RunningServer]]:
    """Start several servers at once (each on its own port), wait until all are up."""
    servers: list[RunningServer] = []
    failed = False
    try:
        for kind in kinds:
            servers.append(_start(kind, apps, check_ms, lifetime_ms))
        for server in servers:
            _wait_until_up(server, timeout=60)
        yield servers
    except BaseException:
        failed = True
        raise
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            _stop(server, keep_log=failed)


def _start(
    kind: ServerKind, apps: Sequence[Path], check_ms: int, lifetime_ms: int
) -> RunningServer:
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix=f"bench-{kind.key}-", suffix=".log", delete=False)
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    env.pop("BOKEH_ALLOW_WS_ORIGIN", None)
    try:
        process = subprocess.Popen(
            kind.command(port, apps, check_ms, lifetime_ms),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=root,
        )
    finally:
        log_file.close()  # the child has its own descriptor
    return RunningServer(kind, port, process, Path(log_file.name))


def _stop(server: RunningServer, keep_log: bool) -> None:
    process = server.process
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if keep_log:
        print(f"{server.kind.label}'s log: {server.log_path}", file=sys.stderr)
    else:
        with contextlib.suppress(OSError):
            os.unlink(server.log_path)

"""Servers in subprocesses on loopback ports, and /proc readings: one helper for the bench, the
tests (``tests/servers.py``) and the fuzzer (``python -m fuzz``).

:func:`start` launches a command with its output in a log file, :func:`wait_until_up` polls
the server's BokehJS until it answers, :func:`stop` ends it (SIGTERM, then SIGKILL);
:func:`serving` does all three around a ``with`` block. The bench's own part, below, names the
servers it compares (:class:`ServerKind`) and starts several at once (:func:`run_servers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "APPS",
    "ROOT",
    "SERVERS",
    "RunningServer",
    "ServerKind",
    "ServerProcess",
    "available_servers",
    "bokeh_version",
    "free_port",
    "process_cpu_seconds",
    "rss_mb",
    "run_server",
    "run_servers",
    "serving",
    "start",
    "stop",
    "wait_until_up",
]

ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = Path(__file__).resolve().parent / "apps"
APPS = [APPS_DIR / name for name in ("small.py", "heavy.py", "stream.py", "scale.py")]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- one server process, whoever starts it ----------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_clock_of() -> Callable[[int], int | None]:
    """glibc's ``clock_getcpuclockid``: another process's CPU clock, read in nanoseconds."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c")).clock_getcpuclockid
    except (OSError, AttributeError, TypeError):
        return lambda pid: None

    def clock_of(pid: int) -> int | None:
        clock = ctypes.c_int()
        return clock.value if function(pid, ctypes.byref(clock)) == 0 else None

    return clock_of


_cpu_clock = _cpu_clock_of()


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a process, user and system, all threads: from its CPU clock (nanoseconds),
    else utime + stime from /proc/<pid>/stat, in 10 ms ticks (too coarse for a workload that
    costs a few hundred milliseconds, which is why the clock comes first)."""
    clock = _cpu_clock(pid)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of the man page): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_field(path: str, name: str) -> int:
    """The number a ``/proc`` status file gives for ``name`` (its first word after the colon)."""
    with open(path) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} in {path}")


def process_wakeups(pid: int) -> int:
    """How often the process's threads have gone to sleep and been woken: the voluntary context
    switches of the threads alive now (/proc keeps no count for a thread that ended; a server's
    pool threads live on). On a VM a wake-up costs more CPU than a message's own work
    (BENCHMARKS.md), so this explains much of a server's CPU per message."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += _status_field(f"/proc/{pid}/task/{task}/status", "voluntary_ctxt_switches")
    return total


def rss_mb(pid: int) -> float:
    """VmRSS of a process in MiB, from /proc/<pid>/status."""
    return _status_field(f"/proc/{pid}/status", "VmRSS") / 1024


@dataclass
class ServerProcess:
    """A server started by :func:`start`: its port, its process and the file of its output."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    prefix: str = ""  # the server's --prefix: part of :attr:`url`, not of :attr:`base_url`
    label: str = "the server"  # for error messages

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + self.prefix

    @property
    def pid(self) -> int:
        return self.process.pid

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

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited early:\n{self.log()[-5000:]}")

    def cpu_seconds(self) -> float:
        """CPU time of the server process (all its threads, user and system)."""
        return process_cpu_seconds(self.pid)

    def wakeups(self) -> int:
        """Voluntary context switches of the server's threads so far (:func:`process_wakeups`)."""
        return process_wakeups(self.pid)

    def rss_bytes(self) -> int:
        """VmRSS of the server process, from /proc/<pid>/status."""
        return int(rss_mb(self.pid) * 1024 * 1024)


def start(
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_prefix: str = "server-",
    prefix: str = "",
    label: str = "the server",
) -> ServerProcess:
    """Launch ``command`` (a server that will listen on ``port``) with stdout and stderr in a
    temporary log file; ``env`` is the whole environment of the child (default: ours)."""
    log_file = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)
    try:
        process = subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ if env is None else env),
            cwd=cwd,
        )
    finally:
        log_file.close()  # the child has its own descriptor
    return ServerProcess(port, process, Path(log_file.name), prefix=prefix, label=label)


def wait_until_up(server: ServerProcess, timeout: float = 30.0) -> None:
    """Poll the server's BokehJS until it answers (any HTTP status will do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            urllib.request.urlopen(server.url + "/static/js/bokeh.min.js", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.label} did not start in {timeout}s:\n{server.log()[-5000:]}")


def stop(server: ServerProcess, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; waits for the process either way."""
    if server.process.poll() is None:
        server.process.terminate()
    _wait_or_kill(server.process, timeout)


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def serving(
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_prefix: str = "server-",
    prefix: str = "",
    label: str = "the server",
    timeout: float = 30.0,
) -> Iterator[ServerProcess]:
    """:func:`start` the server, wait until it is up, and :func:`stop` it after the block."""
    server = start(
        command, port, env=env, cwd=cwd, log_prefix=log_prefix, prefix=prefix, label=label
    )
    try:
        wait_until_up(server, timeout)
        yield server
    finally:
        stop(server)


def with_root_on_path(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment (or ``env``) with the repository root on PYTHONPATH, for ``-m bench...``."""
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    return base


# -- the bench's servers ------------------------------------------------------------------------


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


@dataclass
class RunningServer(ServerProcess):
    """One of the compared servers, as the bench runs it."""

    kind: ServerKind = field(kw_only=True)
    closed_at: float = 0.0  # time.monotonic() when the bench last closed sessions here


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
            wait_until_up(server, timeout=60)
        yield servers
    except BaseException:
        failed = True
        raise
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.terminate()  # all at once: they stop in parallel
        for server in servers:
            _wait_or_kill(server.process, 10.0)
            if failed:
                print(f"{server.label}'s log: {server.log_path}", file=sys.stderr)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(server.log_path)


def _start(
    kind: ServerKind, apps: Sequence[Path], check_ms: int, lifetime_ms: int
) -> RunningServer:
    port = free_port()
    env = with_root_on_path()
    env.pop("BOKEH_ALLOW_WS_ORIGIN", None)
    command = kind.command(port, apps, check_ms, lifetime_ms)
    started = start(command, port, env=env, cwd=ROOT, log_prefix=f"bench-{kind.key}-")
    return RunningServer(
        started.port, started.process, started.log_path, label=kind.label, kind=kind
    )

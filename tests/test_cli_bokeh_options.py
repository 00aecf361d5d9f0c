"""``app-server serve`` accepts every ``bokeh serve`` option: --args, --glob, --use-config,
--index, --ico-path, --log-file, the periodic log lines, HTTPS and a unix socket (with real
clients), and the Tornado-only options with a warning; ``--version`` and the serve usage."""

from __future__ import annotations

import http.client
import os
import pty
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.settings import settings as bokeh_settings
from bokeh.util.paths import server_path

from app_server import ConfigurationError, __version__, protocol
from app_server.cli import _parser, _paths_after_dev, _serve_app, main, settings_from_args
from app_server.settings import ServeSettings, env_names
from bench.servers import ServerProcess, free_port, start, stop
from tests.servers import run_app_server
from tests.wsclient import TOKEN, BokehSocket

ARGV_APP = """\
import sys
from bokeh.io import curdoc
curdoc().title = "argv " + " ".join(sys.argv[1:])
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, info in ServeSettings.model_fields.items():
        for variable in env_names(name, info):
            monkeypatch.delenv(variable, raising=False)


def args_of(*argv: str):  # type: ignore[no-untyped-def]
    return _parser().parse_args(["serve", *argv])


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app_server.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_version_and_the_serve_usage_for_an_unknown_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.strip() == __version__
    with pytest.raises(SystemExit) as unknown:
        main(["serve", "app.py", "--no-such-option"])
    assert unknown.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("usage: app-server serve ")
    assert "unrecognized arguments: --no-such-option" in stderr


def test_args_takes_the_rest_of_the_line() -> None:
    args = args_of("a.py", "b.py", "--port", "8000", "--args", "x", "--port", "-v")
    assert args.files == ["a.py", "b.py"] and args.args == ["x", "--port", "-v"]
    assert settings_from_args(args).port == 8000


def test_use_config_sits_between_the_environment_and_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bokeh_settings, "_config_override", {})  # Bokeh's, loaded here too
    config = tmp_path / "config.yaml"
    config.write_text("port: 7001\nallowed_ws_origin: [a.com]\nnum_threads: 2\nminified: false\n")
    monkeypatch.setenv("APP_SERVER_PORT", "7000")
    monkeypatch.setenv("APP_SERVER_NUM_THREADS", "3")
    settings = settings_from_args(
        args_of("a.py", "--use-config", str(config), "--num-threads", "5")
    )
    assert settings.port == 7001  # the file over the environment
    assert settings.allow_websocket_origin == ["a.com"]  # Bokeh's name for the setting
    assert settings.num_threads == 5  # the command line over the file
    assert bokeh_settings.minified() is False  # Bokeh's own settings go to Bokeh
    config.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigurationError, match="no_such_setting"):
        settings_from_args(args_of("a.py", "--use-config", str(config)))


def bokeh_serve_option(flag: str) -> dict[str, Any]:
    """The keywords of bokeh serve's own option (bokeh.command.subcommands.serve)."""
    from bokeh.command.subcommands.serve import Serve

    for names, argument in Serve.args:
        if flag in ((names,) if isinstance(names, str) else names):
            return {k: v for k, v in vars(argument).items() if v is not None}
    raise AssertionError(f"bokeh serve has no {flag}")


def test_log_level_takes_every_value_bokeh_serve_takes_and_none_is_info() -> None:
    choices = bokeh_serve_option("--log-level")["choices"]
    assert "None" in choices
    for level in choices:
        settings = settings_from_args(args_of("a.py", "--log-level", level))
        assert settings.log_level == ("info" if level == "None" else level)


def test_dev_takes_files_to_watch_as_bokeh_serve_does(tmp_path: Path) -> None:
    assert bokeh_serve_option("--dev")["nargs"] == "*"
    on = settings_from_args(args_of("a.py", "--dev"))
    assert on.dev and on.dev_files == []
    watching = settings_from_args(args_of("a.py", "--dev", "style.less", "data.csv"))
    assert watching.dev and watching.dev_files == ["style.less", "data.csv"]
    assert args_of("a.py", "--dev", "x.csv").files == ["a.py"]
    assert not settings_from_args(args_of("a.py", "--no-dev")).dev
    # before the only path (bokeh serve refuses this): the path, as app-server serve took it
    app = tmp_path / "app.py"
    app.write_text(ARGV_APP)
    args = args_of("--dev", str(app))
    _paths_after_dev(args)
    assert args.files == [str(app)] and settings_from_args(args).dev_files == []


def test_dev_restarts_when_a_file_given_to_it_changes(tmp_path: Path) -> None:
    """A file outside the app's directory, as bokeh serve's --dev FILE watches it."""
    app_dir, other = tmp_path / "app", tmp_path / "data"
    app_dir.mkdir()
    other.mkdir()
    (app_dir / "main.py").write_text(ARGV_APP)
    notes = other / "notes.txt"
    notes.write_text("one")
    with run_app_server(app_dir, args=["--dev", str(notes)]) as server:
        with urllib.request.urlopen(server.url + "/app", timeout=30) as page:
            assert page.status == 200
        time.sleep(1)  # the watcher has started
        notes.write_text("two")
        log = server.wait_for_log("Reloading", timeout=30)
        assert "notes.txt" in log.split("Reloading")[0].rsplit("\n", 1)[-1]


def test_what_bokeh_serve_refuses_is_refused(tmp_path: Path) -> None:
    socket_path = str(tmp_path / "s.sock")
    with pytest.raises(ConfigurationError, match="--port cannot be used with --unix-socket"):
        settings_from_args(args_of("a.py", "--unix-socket", socket_path, "--port", "8000"))
    with pytest.raises(ConfigurationError, match="--ssl-keyfile needs --ssl-certfile"):
        settings_from_args(args_of("a.py", "--ssl-keyfile", "key.pem"))
    with pytest.raises(ConfigurationError, match="ico_path: no such file"):
        settings_from_args(args_of("a.py", "--ico-path", str(tmp_path / "none.ico")))
    with pytest.raises(ConfigurationError, match="log_format: text, json or a logging format"):
        settings_from_args(args_of("a.py", "--log-format", "%(nope"))
    assert settings_from_args(args_of("a.py", "--ico-path", "None")).ico_path == "none"
    dev = settings_from_args(args_of("a.py", "--ico-path", "default-dev")).ico_path
    assert dev == str(server_path() / "views" / "bokeh-dev.ico")


async def test_glob_args_index_icon_log_file_and_periodic_logs(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / f"{name}.py").write_text(ARGV_APP)
    (tmp_path / "index.html").write_text(
        "<ul>{% for item in items %}<li>{{ prefix }}{{ item }}</li>{% end %}</ul>"
    )
    icon = tmp_path / "mine.ico"
    icon.write_bytes(b"\x00\x00\x01\x00not really an icon")
    log_file = tmp_path / "server.log"
    args = [
        "--glob", "--index", str(tmp_path / "index.html"), "--ico-path", str(icon),
        "--log-file", str(log_file), "--stats-log-frequency", "100",
        "--mem-log-frequency", "100", "--websocket-compression-level", "5",
        "--log-format", "%(levelname)s|%(name)s|%(message)s", "--prefix", "/p",
        "--args", "--alpha", "beta",
    ]  # fmt: skip
    with run_app_server(str(tmp_path / "*.py"), args=args) as server:
        base = server.url + "/p"
        with urllib.request.urlopen(base + "/", timeout=5) as response:
            index = response.read().decode()
        assert index == "<ul><li>/p/one</li><li>/p/two</li></ul>"
        with urllib.request.urlopen(base + "/favicon.ico", timeout=5) as response:
            assert response.read() == icon.read_bytes()
        for name in ("one", "two"):
            url = f"{base}/{name}"
            with urllib.request.urlopen(url, timeout=10) as response:
                html = response.read().decode()
            match = TOKEN.search(html)
            assert match
            ws_url = url.replace("http", "ws") + "/ws"
            async with await BokehSocket.open(ws_url, match.group(1)) as ws:
                await ws.receive_type(protocol.ACK)
                reply = await ws.request(protocol.PULL_DOC_REQ)
                assert reply.content["doc"]["title"] == "argv --alpha beta"
        # the sessions outlive their websockets (--disconnected-session-lifetime, 5 s)
        expected = ["Memory usage", "clients connected", "/one has 1 sessions with"]
        deadline = time.monotonic() + 10
        while not all(line in log_file.read_text() for line in expected):
            assert time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.1)
    logged = log_file.read_text()
    assert "WARNING|app_server.cli|--websocket-compression-level is ignored" in logged
    assert "Memory usage" not in server.log()  # the log went to the file


async def test_no_icon_with_ico_path_none(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(ARGV_APP)
    with run_app_server(tmp_path / "app.py", args=["--ico-path", "none"]) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/favicon.ico", timeout=5)
        refused.value.close()
        assert refused.value.code == 404


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1, its key, and the key encrypted ("secret")."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    cert, key, encrypted = where / "cert.pem", where / "key.pem", where / "encrypted.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    )  # fmt: skip
    openssl("pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted))
    return cert, key, encrypted


def started(command: list[str], port: int, ready: object, env: dict[str, str]) -> ServerProcess:
    server = start(command, port, env=env)
    deadline = time.monotonic() + 30
    while True:
        server.check_alive()
        try:
            ready().close()  # type: ignore[operator]
            return server
        except OSError:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)


def serve_command(app: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "app_server.cli", "serve", str(app), *args]


@pytest.fixture
def argv_app(tmp_path: Path) -> Path:
    app = tmp_path / "app.py"
    app.write_text(ARGV_APP)
    return app


@pytest.fixture
def https(
    certificate: tuple[Path, Path, Path], argv_app: Path
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """An HTTPS server with the encrypted key, its password from BOKEH_SSL_PASSWORD."""
    cert, _, encrypted = certificate
    port = free_port()
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    command = serve_command(
        argv_app, "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted)
    )
    env = {**os.environ, "BOKEH_SSL_PASSWORD": "secret"}
    server = started(command, port, lambda: socket.create_connection(("127.0.0.1", port)), env)
    try:
        yield url, context
    finally:
        stop(server)


async def test_https_and_wss_with_a_real_client(https: tuple[str, ssl.SSLContext]) -> None:
    url, context = https
    with urllib.request.urlopen(url + "/app", context=context, timeout=10) as response:
        html = response.read().decode()
    match = TOKEN.search(html)
    assert match
    async with await BokehSocket.open(
        url.replace("https", "wss") + "/app/ws", match.group(1), ssl=context
    ) as ws:
        await ws.receive_type(protocol.ACK)
        reply = await ws.request(protocol.PULL_DOC_REQ)
        assert reply.content["doc"]["title"] == "argv "
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:  # no plain HTTP
        plain.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        try:
            answer = plain.recv(100)
        except OSError:
            answer = b""
        assert not answer.startswith(b"HTTP/")


def test_an_encrypted_key_without_a_password_or_a_terminal_is_refused(
    certificate: tuple[Path, Path, Path],
    argv_app: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, _, encrypted = certificate
    command = ["serve", str(argv_app), "--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted)]
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert main(command) == 2
    assert "set BOKEH_SSL_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("BOKEH_SSL_PASSWORD", "wrong")
    assert main(command) == 2
    assert "cannot use the certificate and key" in capsys.readouterr().err


def unix_connection(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = unix_connection(self.path)


def get_over(path: str, url: str) -> tuple[int, bytes]:
    connection = UnixConnection(path)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_unix_socket_with_a_real_client(argv_app: Path) -> None:
    path = f"/tmp/app-server-{free_port()}.sock"  # short: AF_UNIX paths are limited
    command = serve_command(argv_app, "--unix-socket", path, "--args", "x")
    server = started(command, 0, lambda: unix_connection(path), dict(os.environ))
    try:
        status, body = get_over(path, "/app")
        assert status == 200 and TOKEN.search(body.decode())
        assert get_over(path, "/favicon.ico") == (
            200,
            (server_path() / "views" / "bokeh.ico").read_bytes(),
        )
    finally:
        stop(server)
        Path(path).unlink(missing_ok=True)


def test_the_password_of_an_encrypted_key_is_asked_for_on_the_terminal(
    certificate: tuple[Path, Path, Path], argv_app: Path
) -> None:
    """As with bokeh serve (OpenSSL's prompt): on a terminal, without BOKEH_SSL_PASSWORD."""
    cert, _, encrypted = certificate
    port = free_port()
    command = serve_command(
        argv_app, "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(encrypted)
    )
    env = {k: v for k, v in os.environ.items() if "SSL_PASSWORD" not in k}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: its own session, the pty its controlling terminal
        os.execve(sys.executable, command, env)
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"pass phrase" not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([terminal], [], [], 0.5)[0]:
                seen += os.read(terminal, 1024)
        os.write(terminal, b"secret\n")
        context = ssl.create_default_context(cafile=str(cert))
        while True:
            assert time.monotonic() < deadline, seen
            if select.select([terminal], [], [], 0)[0]:
                seen += os.read(terminal, 4096)  # keep the pty drained
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
                ) as response:
                    assert response.status == 200
                    break
            except urllib.error.URLError:
                time.sleep(0.1)
        assert b"secret" not in seen  # not echoed
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(terminal)


async def test_worker_processes_give_the_apps_their_args(argv_app: Path) -> None:
    with run_app_server(argv_app, args=["--num-procs", "2", "--args", "w", "--x"]) as server:
        url = server.url + "/app"
        with urllib.request.urlopen(url, timeout=10) as response:
            match = TOKEN.search(response.read().decode())
        assert match
        async with await BokehSocket.open(url.replace("http", "ws") + "/ws", match.group(1)) as ws:
            await ws.receive_type(protocol.ACK)
            reply = await ws.request(protocol.PULL_DOC_REQ)
            assert reply.content["doc"]["title"] == "argv w --x"


def test_no_paths_serve_an_empty_document_and_num_procs_0_is_one_per_cpu() -> None:
    args = args_of("--num-procs", "0")
    assert args.files == [] and settings_from_args(args).num_procs == 0
    app = _serve_app({}, [], settings_from_args(args))
    assert list(app.state.server.contexts) == ["/"]

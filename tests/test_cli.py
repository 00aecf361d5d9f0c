"""``app-server serve``: options, worker processes, JSON logs and --dev reloading."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from websockets.exceptions import WebSocketException

from app_server import protocol
from app_server.cli import _GracefulServer, _parser, settings_from_args
from tests.conftest import EXAMPLES
from tests.servers import run_app_server
from tests.wsclient import BokehSocket, fetch_token


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return settings_from_args(_parser().parse_args(["serve", "app.py", *argv]))


def test_options_become_settings() -> None:
    settings = parse(
        "--port", "8000", "--prefix", "dash", "--allow-websocket-origin", "a.com",
        "--allow-websocket-origin", "b.com:8080", "--unused-session-lifetime", "100",
    )  # fmt: skip
    assert settings.port == 8000
    assert settings.prefix == "/dash"
    assert settings.allow_websocket_origin == ["a.com", "b.com:8080"]
    assert settings.unused_session_lifetime == 100


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SERVER_PORT", "7000")
    monkeypatch.setenv("BOKEH_ALLOW_WS_ORIGIN", "x.org,y.org")
    assert parse().port == 7000
    assert parse().allow_websocket_origin == ["x.org", "y.org"]
    assert parse("--port", "7001").port == 7001


def test_session_id_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOKEH_SECRET_KEY", "k" * 32)
    signed = parse("--session-ids", "signed")
    assert signed.sign_sessions and signed.generate_session_ids
    external = parse("--session-ids", "external-signed")
    assert external.sign_sessions and not external.generate_session_ids


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app_server.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_bad_setup_exits_with_a_message_that_says_what_to_do() -> None:
    result = run_cli("serve", str(EXAMPLES / "demo.py"), "--session-ids", "signed")
    assert result.returncode == 2
    assert "BOKEH_SECRET_KEY" in result.stderr
    missing = run_cli("serve", "/nowhere/app.py")
    assert missing.returncode == 2 and "no Bokeh application" in missing.stderr


async def test_the_main_loop_sleeps_until_told_to_stop() -> None:
    """uvicorn's main loop wakes ten times a second to look at should_exit; ours once a
    second (the date header), and a stop from another thread wakes it at once."""
    server = _GracefulServer(uvicorn.Config(app=None), app_server=None)  # type: ignore[arg-type]
    ticks: list[int] = []
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.on_tick = counted  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = loop.time()
    running = loop.create_task(server.main_loop())
    await asyncio.sleep(0.3)
    assert len(ticks) == 1, "one tick at start, then asleep (uvicorn's would have ticked 3 times)"
    stopper = threading.Thread(target=setattr, args=(server, "should_exit", True))
    stopper.start()
    await asyncio.wait_for(running, 5)
    stopper.join()
    assert loop.time() - started < 0.95, "woken by the stop, before the next second's tick"
    assert all(count % 10 == 0 for count in ticks), "each tick refreshes the date header"


async def test_several_worker_processes_serve_sessions() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--num-procs", "2"]) as server:
        for _ in range(4):
            token = fetch_token(server.url + "/demo")
            ws_url = server.url.replace("http", "ws") + "/demo/ws"
            async with await BokehSocket.open(ws_url, token) as socket:
                await socket.receive_type(protocol.ACK)
                reply = await socket.request(protocol.PULL_DOC_REQ)
                assert reply.content["doc"]["title"] == "app_server demo"
        server.wait_for_log("supervising 2 worker processes")
        deadline = time.monotonic() + 30  # the second worker may start after the first serves
        while server.log().count("app_server started") < 2:
            assert time.monotonic() < deadline, "one app_server per worker"
            time.sleep(0.1)
        assert server.log().count("app_server started") == 2


async def test_json_logs_carry_session_ids() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--log-format", "json"]) as server:
        token = fetch_token(server.url + "/demo")
        ws_url = server.url.replace("http", "ws") + "/demo/ws"
        async with await BokehSocket.open(ws_url, token) as socket:
            await socket.receive_type(protocol.ACK)
        server.wait_for_log("websocket closed")
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    opened = [e for e in entries if e["message"].endswith("websocket opened")]
    assert opened and opened[0]["session_id"] and opened[0]["app"] == "/demo"


async def document_title(url: str) -> str:
    token = fetch_token(url)
    ws_url = url.replace("http", "ws") + "/ws"
    async with await BokehSocket.open(ws_url, token) as socket:
        await socket.receive_type(protocol.ACK)
        return str((await socket.request(protocol.PULL_DOC_REQ)).content["doc"]["title"])


async def test_dev_mode_reloads_an_edited_app(tmp_path: Path) -> None:
    app = tmp_path / "reloading.py"
    shutil.copy(EXAMPLES / "demo.py", app)
    with run_app_server(app, args=["--dev"]) as server:
        url = server.url + "/reloading"
        assert await document_title(url) == "app_server demo"
        app.write_text(app.read_text().replace('"app_server demo"', '"edited title"'))
        deadline = time.monotonic() + 30
        while True:
            try:
                if await document_title(url) == "edited title":
                    break
            except (OSError, WebSocketException):
                pass  # restarting
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.2)


async def test_dev_mode_ignores_a_log_file_written_in_the_apps_directory(tmp_path: Path) -> None:
    """The reloader watches the app's directory; the log file there is no change of the app's
    (and the watcher's own line about it, logged into that file, made an endless loop)."""
    app = tmp_path / "logged"
    app.mkdir()
    shutil.copy(EXAMPLES / "demo.py", app / "main.py")
    log_file = app / "server.log"
    with run_app_server(app, args=["--dev", "--log-file", str(log_file)]) as server:
        for _ in range(3):  # each session writes lines into the app's directory
            assert await document_title(server.url + "/logged") == "app_server demo"
        time.sleep(2)  # time for the watcher to see them
        assert await document_title(server.url + "/logged") == "app_server demo"
    text = log_file.read_text()
    assert text.count("Started server process") == 1, "one worker process: no restart"
    assert "change detected" not in text and "Reloading" not in text


@pytest.mark.parametrize(
    "mode", [[], ["--num-procs", "2"], ["--dev"]], ids=["one process", "num-procs", "dev"]
)
def test_a_port_in_use_is_one_line_before_any_hook_runs(tmp_path: Path, mode: list[str]) -> None:
    app = tmp_path / "hooked"
    app.mkdir()
    (app / "main.py").write_text("from bokeh.io import curdoc\n")
    loaded = tmp_path / "loaded"
    (app / "server_lifecycle.py").write_text(
        f"def on_server_loaded(server_context):\n    open({str(loaded)!r}, 'w').close()\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", str(app), "--port", str(port), *mode)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"app-server: 127.0.0.1:{port} is already in use: stop what listens there, or choose "
        "another --port"
    ]
    assert not loaded.exists(), "on_server_loaded did not run"

"""``app-server serve``: options, worker processes, JSON logs and --dev reloading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import WebSocketException

from app_server import protocol
from app_server.cli import _parser, settings_from_args
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


async def test_several_worker_processes_serve_sessions() -> None:
    with run_app_server(EXAMPLES / "demo.py", args=["--num-procs", "2"]) as server:
        for _ in range(4):
            token = fetch_token(server.url + "/demo")
            ws_url = server.url.replace("http", "ws") + "/demo/ws"
            async with await BokehSocket.open(ws_url, token) as socket:
                await socket.receive_type(protocol.ACK)
                reply = await socket.request(protocol.PULL_DOC_REQ)
                assert reply.content["doc"]["title"] == "app_server demo"
        server.wait_for_log("Started parent process")
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

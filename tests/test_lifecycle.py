"""A directory app using every file of Bokeh's format, served by a real app-server process."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from app_server import protocol
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server
from tests.wsclient import BokehSocket, fetch_token

APP = EXAMPLES / "lifecycle_app"


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def wait_for_event(log: Path, event: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while event not in events(log):
        if time.monotonic() > deadline:
            raise AssertionError(f"{event!r} not in {events(log)}")
        time.sleep(0.05)


def get(url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    return urllib.request.urlopen(request, timeout=10).read().decode()


def session_id_of(token: str) -> str:
    from bokeh.util.token import get_session_id

    return get_session_id(token)


def ws_url(server: RunningServer) -> str:
    return server.url.replace("http://", "ws://") + "/lifecycle_app/ws"


@pytest.fixture
def hooks_log(tmp_path: Path) -> Path:
    return tmp_path / "hooks.log"


@pytest.fixture
def server(hooks_log: Path) -> Iterator[RunningServer]:
    args = ["--unused-session-lifetime", "300", "--check-unused-sessions", "100"]
    with run_app_server(APP, args=args, env={"LIFECYCLE_LOG": str(hooks_log)}) as server:
        yield server


async def test_hooks_fire_in_order_once_each(server: RunningServer, hooks_log: Path) -> None:
    assert events(hooks_log) == ["server_loaded"], "on_server_loaded runs before serving"
    token = fetch_token(server.url + "/lifecycle_app")
    session_id = session_id_of(token)
    assert events(hooks_log) == ["server_loaded", f"session_created {session_id}"]

    async with await BokehSocket.open(ws_url(server), token) as socket:
        await socket.receive_type(protocol.ACK)
        await socket.request(protocol.PULL_DOC_REQ)
    wait_for_event(hooks_log, f"session_destroyed {session_id}")

    server.process.terminate()
    server.process.wait(10)
    assert events(hooks_log) == [
        "server_loaded",
        f"session_created {session_id}",
        f"session_destroyed {session_id}",
        "server_unloaded",
    ]


def test_the_template_renders_named_roots_and_template_variables(server: RunningServer) -> None:
    html = get(server.url + "/lifecycle_app?N=2&name=bob")
    assert '<h1 class="greeting">hello bob</h1>' in html
    assert "This page shows 2 points." in html
    assert html.count("data-root-id=") == 3, "each embed(roots.<name>) places one root"
    assert "<title>lifecycle app</title>" in html


def test_the_apps_static_directory_is_served(server: RunningServer) -> None:
    css = get(server.url + "/lifecycle_app/static/style.css")
    assert ".greeting" in css


async def test_arguments_payload_and_theme_reach_the_document(server: RunningServer) -> None:
    token = fetch_token(server.url + "/lifecycle_app?N=3&name=ann")
    async with await BokehSocket.open(ws_url(server), token) as socket:
        await socket.receive_type(protocol.ACK)
        doc = (await socket.request(protocol.PULL_DOC_REQ)).content["doc"]
    text = json.dumps(doc)
    assert "points: 3, greeting: hello ann" in text
    assert '"background_fill_color": "#f4f1e8"' in text, "theme.yaml applied"


async def test_a_reconnect_with_an_expired_token_is_refused_though_the_session_lives(
    hooks_log: Path,
) -> None:
    # 2 s: a token's expiry is whole seconds, so one issued late in a second with 1 s expires
    # within milliseconds, before its first websocket opens
    args = ["--session-token-expiration", "2", "--unused-session-lifetime", "3000"]
    args += ["--check-unused-sessions", "100"]
    with run_app_server(APP, args=args, env={"LIFECYCLE_LOG": str(hooks_log)}) as server:
        token = fetch_token(server.url + "/lifecycle_app")
        session_id = session_id_of(token)
        async with await BokehSocket.open(ws_url(server), token) as socket:
            await socket.receive_type(protocol.ACK)
            await socket.request(protocol.PULL_DOC_REQ)
        time.sleep(2.5)  # the token has expired; the session is still held

        with pytest.raises(InvalidStatus) as refused:
            await BokehSocket.open(ws_url(server), token)
        assert refused.value.response.status_code == 403
        assert b"expired" in refused.value.response.body
        wait_for_event(hooks_log, f"session_destroyed {session_id}")
        assert events(hooks_log).count(f"session_created {session_id}") == 1


def test_a_session_id_in_the_log_for_every_session(server: RunningServer) -> None:
    token = fetch_token(server.url + "/lifecycle_app")
    assert re.search(rf"created session {re.escape(session_id_of(token))}", server.log())


DESTROY_HOOK_APP = """
import os

from bokeh.io import curdoc
from bokeh.models import Div

RECORD = os.environ["DESTROYED_RECORD"]
farewell = "goodbye"


def record(session_context):  # reads this module's globals once the session is gone
    with open(RECORD, "a") as file:
        file.write(f"{farewell} {session_context.id}\\n")


curdoc().add_root(Div(text="hello"))
curdoc().on_session_destroyed(record)
"""


async def test_a_documents_destroy_hook_reads_the_app_modules_globals(tmp_path: Path) -> None:
    """curdoc().on_session_destroyed(fn) in main.py: fn runs while main.py's module is whole
    (Bokeh's server clears it first, and such a hook fails with NameError there)."""
    app = tmp_path / "farewell"
    app.mkdir()
    (app / "main.py").write_text(DESTROY_HOOK_APP)
    record = tmp_path / "destroyed.txt"
    args = ["--disconnected-session-lifetime", "100"]
    with run_app_server(app, args=args, env={"DESTROYED_RECORD": str(record)}) as server:
        token = fetch_token(server.url + "/farewell")
        url = server.url.replace("http://", "ws://") + "/farewell/ws"
        async with await BokehSocket.open(url, token) as socket:
            await socket.receive_type(protocol.ACK)
            await socket.request(protocol.PULL_DOC_REQ)
        wait_for_event(record, f"goodbye {session_id_of(token)}")
        assert "NameError" not in server.log()

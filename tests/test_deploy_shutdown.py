"""Graceful shutdown of ``app-server serve``: SIGTERM, as a container runtime or systemd sends it.

Readiness turns 503 at once; with ``--shutdown-delay`` pages and websockets are still served
for that long (a load balancer's time to notice). Then the server stops listening, closes every
websocket with 1001 (going away: BokehJS and ``bokeh.client`` see a server that left, not a
protocol error), discards its sessions (``on_session_destroyed``), runs
``on_server_unloaded`` and exits 0, all within a bounded time.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bokeh.util.token import get_session_id
from websockets.exceptions import ConnectionClosed

from app_server import protocol
from tests.conftest import EXAMPLES
from tests.servers import run_app_server
from tests.wsclient import BokehSocket, fetch_token

EXIT_WITHIN = 15.0


async def closed_code(socket: BokehSocket) -> int | None:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(1000):  # bounded: the server sends nothing but the close here
            await asyncio.wait_for(socket.receive(), EXIT_WITHIN)
    received = closed.value.rcvd
    return None if received is None else received.code


async def test_sigterm_closes_websockets_with_1001_runs_the_hooks_and_exits(
    tmp_path: Path,
) -> None:
    events = tmp_path / "lifecycle.log"
    app = EXAMPLES / "lifecycle_app"
    with run_app_server(app, env={"LIFECYCLE_LOG": str(events)}) as server:
        token = fetch_token(server.url + "/lifecycle_app")
        session_id = get_session_id(token)
        ws_url = server.url.replace("http", "ws") + "/lifecycle_app/ws"
        # two tabs of one session (a page and a reconnect, say): both must be told
        first = await BokehSocket.open(ws_url, token)
        second = await BokehSocket.open(ws_url, token)
        for socket in (first, second):
            await socket.receive_type(protocol.ACK)
            reply = await socket.request(protocol.PULL_DOC_REQ)
            assert reply.content["doc"]["title"] == "lifecycle app"

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(closed_code(first), closed_code(second))
        await asyncio.to_thread(server.process.wait, EXIT_WITHIN)
        elapsed = time.monotonic() - started

        assert codes == [1001, 1001]
        assert server.process.returncode == 0, "a clean drain exits 0, as bokeh serve does"
        assert elapsed < EXIT_WITHIN
        assert "app_server stopped" in server.log()
    assert events.read_text().splitlines() == [
        "server_loaded",
        f"session_created {session_id}",
        f"session_destroyed {session_id}",
        "server_unloaded",
    ]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


async def pulled_title(ws_url: str, token: str) -> str:
    async with await BokehSocket.open(ws_url, token) as socket:
        await socket.receive_type(protocol.ACK)
        reply = await socket.request(protocol.PULL_DOC_REQ)
    return str(reply.content["doc"]["title"])


async def test_sigterm_turns_readiness_503_and_serves_until_the_shutdown_delay_is_over() -> None:
    delay = 6  # the margin to check the server still serves: no timing is asserted
    app = EXAMPLES / "demo.py"
    with run_app_server(app, args=["--shutdown-delay", str(delay)]) as server:
        page, ws_url = server.url + "/demo", server.url.replace("http", "ws") + "/demo/ws"
        assert status_of(server.url + "/readyz") == 200
        tab = await BokehSocket.open(ws_url, fetch_token(page))
        await tab.receive_type(protocol.ACK)

        server.process.send_signal(signal.SIGTERM)
        for _ in range(100):  # at once, but the signal takes a moment to arrive
            if status_of(server.url + "/readyz") == 503:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("/readyz did not turn 503 after SIGTERM")
        # still serving: a new page, and its websocket, which gets its document
        assert await pulled_title(ws_url, fetch_token(page)) == "app_server demo"
        assert server.process.poll() is None
        reply = await tab.request(protocol.PULL_DOC_REQ)  # the open tab still works
        assert reply.content["doc"]["title"] == "app_server demo"

        assert await closed_code(tab) == 1001  # once the delay is over
        await asyncio.to_thread(server.process.wait, EXIT_WITHIN)
        assert server.process.returncode == 0
        log = server.log()
        assert log.index("stopping in 6 s") < log.index("app_server stopped")

"""Graceful shutdown of ``app-server serve``: SIGTERM, as a container runtime or systemd sends it.

The server stops listening, closes every websocket with 1001 (going away: BokehJS and
``bokeh.client`` see a server that left, not a protocol error), discards its sessions
(``on_session_destroyed``), runs ``on_server_unloaded`` and exits, all within a bounded time.
"""

from __future__ import annotations

import asyncio
import signal
import time
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
        assert server.process.returncode is not None and elapsed < EXIT_WITHIN
        assert "app_server stopped" in server.log()
    assert events.read_text().splitlines() == [
        "server_loaded",
        f"session_created {session_id}",
        f"session_destroyed {session_id}",
        "server_unloaded",
    ]

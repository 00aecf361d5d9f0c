"""The seed's thread and unlocked-callback examples run unchanged and behave as described."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from app_server import protocol
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server
from tests.wsclient import BokehSocket, fetch_token


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with run_app_server(EXAMPLES / "thread_updates.py", EXAMPLES / "unlocked_callbacks.py") as s:
        yield s


async def streamed_colors(server: RunningServer, app: str, seconds: float) -> list[str]:
    """Open a session like a browser and collect what its streams send for ``seconds``."""
    token = fetch_token(f"{server.url}/{app}")
    ws_url = f"{server.url.replace('http', 'ws')}/{app}/ws"
    streamed: list[str] = []
    async with await BokehSocket.open(ws_url, token) as socket:
        await socket.receive_type(protocol.ACK)
        await socket.request(protocol.PULL_DOC_REQ)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(socket.receive(), left)
            except TimeoutError:
                break
            for event in message.content.get("events", []):
                if event["kind"] == "ColumnsStreamed":
                    entries = dict(event["data"]["entries"])
                    streamed += entries.get("color", ["none"])
    return streamed


async def test_a_thread_streams_points_through_next_tick_callbacks(server: RunningServer) -> None:
    streamed = await streamed_colors(server, "thread_updates", 1.5)
    assert len(streamed) >= 5, "the thread's updates arrive (about 10 a second)"


async def test_the_locked_periodic_callback_keeps_its_rate_while_the_unlocked_one_waits(
    server: RunningServer,
) -> None:
    streamed = await streamed_colors(server, "unlocked_callbacks", 3.2)
    red, blue = streamed.count("red"), streamed.count("blue")
    # update() runs every 200 ms under the lock (about 16 in 3.2 s) although
    # unlocked_task spends a second in the executor each time it runs
    assert red >= 10, streamed
    assert blue >= 1, "the unlocked task's result comes back through a next-tick callback"
    assert not any("Traceback" in line for line in server.log().splitlines()), json.dumps(
        server.log()[-2000:]
    )

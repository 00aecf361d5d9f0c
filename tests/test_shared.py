"""Shared per-process data, and clear errors for models shared between sessions."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
from starlette.exceptions import HTTPException

from app_server import load_once, protocol
from app_server.testing import AppTestClient
from tests.conftest import EXAMPLES, TEST_APPS
from tests.servers import run_app_server
from tests.wsclient import BokehSocket, fetch_token


def test_load_once_computes_once_for_many_threads_at_the_same_time() -> None:
    calls = 0

    @load_once
    def load() -> list[int]:
        nonlocal calls
        calls += 1
        time.sleep(0.05)
        return list(range(1000))

    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(load())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert all(result is results[0] for result in results)


async def test_load_once_shares_one_computation_between_coroutines() -> None:
    calls = 0

    @load_once
    async def load(name: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return name.upper()

    assert await asyncio.gather(*(load("a") for _ in range(10))) == ["A"] * 10
    assert await load("b") == "B"
    assert calls == 2, "once per argument set"


def test_a_failed_load_is_tried_again() -> None:
    attempts = []

    @load_once
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("the disk hiccuped")
        return "data"

    with pytest.raises(OSError):
        flaky()
    assert flaky() == "data"


@pytest.fixture(autouse=True)
def fresh_shared_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test imports the mistaken module anew (Python caches it across tests too)."""
    monkeypatch.delitem(sys.modules, "shared_models", raising=False)


async def test_a_model_shared_between_sessions_gets_an_error_that_names_it_and_the_fix() -> None:
    async with AppTestClient(TEST_APPS / "shared_model_app") as client:
        first = await client.open_session()
        with pytest.raises(HTTPException) as failed:
            await client.open_session()
        message = str(failed.value.detail)
        assert "Div(id=" in message
        assert "shared_models.status" in message and "shared_models.py, line 5" in message
        assert "create them inside a function" in message
        assert "Models must be owned by only a single document" not in message

        first.server_session.document.add_next_tick_callback(
            lambda: setattr(first.server_session.document.roots[0], "text", "still mine")
        )
        await first.settle()
        assert first.document.roots[0].text == "still mine"


async def test_a_model_reused_after_its_session_was_discarded_is_reported() -> None:
    async with AppTestClient(TEST_APPS / "shared_model_app") as client:
        first = await client.open_session()
        await client.close_session(first)
        with pytest.raises(HTTPException) as failed:
            await client.open_session()
        message = str(failed.value.detail)
        assert f"belonged to session {first.id}, which has been discarded" in message
        assert "shared_models.status" in message


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def test_fifty_sessions_share_one_dataframe() -> None:
    with run_app_server(EXAMPLES / "shared_data") as server:
        url = server.url + "/shared_data"
        ws_url = url.replace("http", "ws") + "/ws"

        async def open_session() -> BokehSocket:
            socket = await BokehSocket.open(ws_url, fetch_token(url))
            await socket.receive_type(protocol.ACK)
            reply = await socket.request(protocol.PULL_DOC_REQ)
            assert reply.msgtype == protocol.PULL_DOC_REPLY
            return socket

        sockets = [await open_session()]
        one = rss_kib(server.process.pid)
        sockets += [await open_session() for _ in range(49)]
        fifty = rss_kib(server.process.pid)
        for socket in sockets:
            await socket.close()

    per_session = (fifty - one) / 49
    # the DataFrame is about 32 MB; one copy per session would add that much each
    assert per_session < 1500, f"{per_session:.0f} KiB per session (1 session: {one} KiB)"

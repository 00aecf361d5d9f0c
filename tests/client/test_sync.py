"""The blocking facade (bokeh.client's API) from plain code and from inside running loops."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import Div

from app_server.client import (
    SyncClientSession,
    pull_session,
    push_session,
    show_session,
    websocket_url_for_server_url,
)
from app_server.client import _thread as client_thread

from .conftest import Apps


def text(session: SyncClientSession, name: str) -> str:
    assert session.document is not None
    return str(session.document.get_model_by_name(name).text)  # type: ignore[union-attr]


def move_slider_and_check(url: str, value: float) -> str:
    """What a Flask or FastAPI view would do: pull, change, and check on a second client."""
    with pull_session(url=url) as session:
        assert session.connected
        session.document.get_model_by_name("frequency").value = value  # type: ignore[union-attr]
        session.force_roundtrip()
        with pull_session(session_id=session.id, url=url) as second:
            return text(second, "status")
    raise AssertionError("unreachable")


def test_pull_change_and_see_it_from_a_second_client(apps: Apps) -> None:
    assert move_slider_and_check(apps.url("demo"), 2.0) == "frequency = 2.0, resets: 0"


def test_push_then_pull_the_same_session(apps: Apps) -> None:
    document = Document()
    document.add_root(Div(text="pushed", name="note"))
    with push_session(document, session_id=None, url=apps.url("demo")) as pushed:
        assert pushed.document is document
        with pull_session(session_id=pushed.id, url=apps.url("demo")) as pulled:
            assert text(pulled, "note") == "pushed"
            document.get_model_by_name("note").text = "from the caller's thread"  # type: ignore[union-attr]
            pushed.force_roundtrip()
            pulled.force_roundtrip()
            assert text(pulled, "note") == "from the caller's thread"


def test_numpy_columns_from_the_callers_thread(app_server_apps: Apps) -> None:
    x = np.arange(2000, dtype=np.float64)
    with pull_session(url=app_server_apps.url("client_data")) as session:
        assert session.document is not None
        session.document.get_model_by_name("source").data = {"x": x}  # type: ignore[union-attr]
        session.force_roundtrip()
        assert text(session, "summary") == f"ndarray float64 len=2000 sum={float(x.sum())}"
        doubled = session.document.get_model_by_name("doubled").data["y"]  # type: ignore[union-attr]
        np.testing.assert_array_equal(doubled, x * 2)


def test_server_changes_wait_for_the_callers_next_call(app_server_apps: Apps) -> None:
    with pull_session(url=app_server_apps.url("client_ticker")) as session:
        start = text(session, "ticks")
        time.sleep(0.3)  # the server ticks every 50 ms meanwhile
        assert text(session, "ticks") == start  # the caller's thread owns the document
        deadline = time.monotonic() + 5
        while text(session, "ticks") == start:
            assert time.monotonic() < deadline, "the server's changes never arrived"
            session.force_roundtrip()
        assert int(text(session, "ticks")) > int(start)


def test_the_session_object_as_a_context_manager(app_server_apps: Apps) -> None:
    websocket_url = websocket_url_for_server_url(app_server_apps.url("demo"))
    with SyncClientSession(websocket_url=websocket_url, io_loop=None) as session:
        assert not session.connected
        assert session.document is None
        session.connect()
        session.check_connection_errors()
        assert session.connected
        assert session.url == websocket_url
        assert session.request_server_info()["version_info"]["bokeh"]
        session.pull()
        assert session.asyncio_session.document is session.document
    assert not session.connected


def test_show_and_show_session(app_server_apps: Apps) -> None:
    opened: list[tuple[str, int]] = []

    class Controller:
        def open(self, url: str, new: int = 0) -> None:
            opened.append((url, new))

    url = app_server_apps.url("demo")
    with pull_session(url=url) as session:
        session.show(Div(text="shown", name="shown"), controller=Controller())
        show_session(session=session, controller=Controller(), new="window")
        with pull_session(session_id=session.id, url=url) as second:
            assert text(second, "shown") == "shown"
    show_session(session_id="by-name", url=url + "/", controller=Controller())
    show_session(url=url, controller=Controller())
    page = f"{url}/?bokeh-session-id={session.id}"
    assert opened[:3] == [(page, 2), (page, 1), (f"{url}?bokeh-session-id=by-name", 2)]
    assert opened[3][0].startswith(f"{url}?bokeh-session-id=")


async def test_blocking_calls_inside_a_running_event_loop(app_server_apps: Apps) -> None:
    """As in an ``async def`` FastAPI route: blocking, but the loop is not needed or touched."""
    loop = asyncio.get_running_loop()
    assert move_slider_and_check(app_server_apps.url("demo"), 1.5) == "frequency = 1.5, resets: 0"
    assert asyncio.get_running_loop() is loop


async def test_blocking_calls_from_worker_threads_of_a_running_loop(app_server_apps: Apps) -> None:
    """As in a sync FastAPI route (run in a thread pool) or a thread started by the app."""
    url = app_server_apps.url("demo")
    from_to_thread = asyncio.to_thread(move_slider_and_check, url, 3.0)
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(move_slider_and_check(url, 4.0)))
    thread.start()
    assert await from_to_thread == "frequency = 3.0, resets: 0"
    await asyncio.to_thread(thread.join, 30)
    assert results == ["frequency = 4.0, resets: 0"]


def test_a_blocking_call_from_the_client_thread_raises_instead_of_deadlocking() -> None:
    async def nested() -> None:
        client_thread.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="await it instead"):
        client_thread.run(nested())

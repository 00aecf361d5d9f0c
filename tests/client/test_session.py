"""The asyncio ClientSession against a live app_server and, where marked, ``bokeh serve``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import bokeh
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import Div
from bokeh.util.token import get_session_id, get_token_payload

from app_server import protocol
from app_server.client import ClientSession
from tests.wsclient import fetch_token

from .conftest import Apps


def model(session: ClientSession, name: str) -> object:
    assert session.document is not None
    found = session.document.get_model_by_name(name)
    assert found is not None, f"no model named {name!r} in the document"
    return found


def text(session: ClientSession, name: str) -> str:
    return str(model(session, name).text)  # type: ignore[attr-defined]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (without any request) until ``check()`` holds: only pushed patches can make it."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_pull_gets_the_document(apps: Apps) -> None:
    async with ClientSession(url=apps.url("demo")) as session:
        assert session.document is None
        await session.pull()
        assert session.document is not None
        assert session.document.title == "app_server demo"
        assert text(session, "status") == "frequency = 1.0, resets: 0"
        assert model(session, "frequency").value == 1.0  # type: ignore[attr-defined]


async def test_connected_flips_with_connect_and_close(apps: Apps) -> None:
    session = ClientSession(url=apps.url("demo"))
    assert not session.connected
    await session.connect()
    assert session.connected
    session.check_connection_errors()
    await session.close()
    assert not session.connected
    await session.close()  # idempotent


async def test_async_with_closes_the_connection(app_server_apps: Apps) -> None:
    async with ClientSession(url=app_server_apps.url("demo")) as session:
        await session.pull()
        assert session.connected
    assert not session.connected


async def test_client_change_reaches_the_server(apps: Apps) -> None:
    async with ClientSession(url=apps.url("demo")) as session:
        await session.pull()
        model(session, "frequency").value = 2.5  # type: ignore[attr-defined]
        await session.force_roundtrip()
        # the server's callback ran and its change came back
        assert text(session, "status") == "frequency = 2.5, resets: 0"
        async with ClientSession(session.id, url=apps.url("demo")) as second:
            await second.pull()
            assert model(second, "frequency").value == 2.5  # type: ignore[attr-defined]
            assert text(second, "status") == "frequency = 2.5, resets: 0"


async def test_server_change_reaches_the_client(apps: Apps) -> None:
    async with ClientSession(url=apps.url("client_ticker")) as session:
        await session.pull()
        start = int(text(session, "ticks"))
        await eventually(lambda: int(text(session, "ticks")) >= start + 2)


async def test_another_clients_change_reaches_this_client(apps: Apps) -> None:
    url = apps.url("demo")
    async with ClientSession(url=url) as watcher, ClientSession(watcher.id, url=url) as actor:
        await watcher.pull()
        await actor.pull()
        model(actor, "frequency").value = 4.0  # type: ignore[attr-defined]
        await eventually(lambda: model(watcher, "frequency").value == 4.0)  # type: ignore[attr-defined]
        await eventually(lambda: text(watcher, "status") == "frequency = 4.0, resets: 0")


async def test_changes_from_the_server_are_not_echoed_back(
    app_server_apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    encode = protocol.encode

    def spy(message: protocol.Message) -> list[protocol.Frame]:
        sent.append(message.msgtype)
        return encode(message)

    monkeypatch.setattr(protocol, "encode", spy)
    async with ClientSession(url=app_server_apps.url("client_ticker")) as session:
        await session.pull()
        start = int(text(session, "ticks"))
        await eventually(lambda: int(text(session, "ticks")) >= start + 2)
        await session.force_roundtrip()
    assert protocol.PATCH_DOC not in sent


async def test_push_then_pull_the_same_session(apps: Apps) -> None:
    document = Document()
    document.add_root(Div(text="pushed", name="note"))
    async with ClientSession(url=apps.url("demo")) as pusher:
        await pusher.push(document)
        assert pusher.document is document
        async with ClientSession(pusher.id, url=apps.url("demo")) as puller:
            await puller.pull()
            assert text(puller, "note") == "pushed"
            assert puller.document is not None
            assert puller.document.get_model_by_name("status") is None
            model(pusher, "note").text = "changed after the push"  # type: ignore[attr-defined]
            await eventually(lambda: text(puller, "note") == "changed after the push")


async def test_push_refuses_a_different_document(app_server_apps: Apps) -> None:
    async with ClientSession(url=app_server_apps.url("demo")) as session:
        await session.push()
        assert session.document is not None
        await session.push(session.document)
        with pytest.raises(ValueError, match="different document"):
            await session.push(Document())


async def test_second_pull_overwrites_the_same_document(app_server_apps: Apps) -> None:
    url = app_server_apps.url("demo")
    async with ClientSession(url=url) as session, ClientSession(session.id, url=url) as other:
        await session.pull()
        document = session.document
        await other.pull()
        model(other, "frequency").value = 3.0  # type: ignore[attr-defined]
        await other.force_roundtrip()
        await session.pull()
        assert session.document is document
        assert model(session, "frequency").value == 3.0  # type: ignore[attr-defined]
        await session.force_roundtrip()  # the replacement was not sent back as changes
        assert text(other, "status") == "frequency = 3.0, resets: 0"


async def test_numpy_columns_travel_as_binary_buffers(
    apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames_out: list[protocol.Frame] = []
    frames_in: list[protocol.Frame] = []
    encode, receive = protocol.encode, protocol.Receiver.receive_frame

    def encode_spy(message: protocol.Message) -> list[protocol.Frame]:
        frames = encode(message)
        frames_out.extend(frames)
        return frames

    def receive_spy(self: protocol.Receiver, frame: protocol.Frame) -> object:
        frames_in.append(frame)
        return receive(self, frame)

    monkeypatch.setattr(protocol, "encode", encode_spy)
    monkeypatch.setattr(protocol.Receiver, "receive_frame", receive_spy)
    x = np.linspace(0.0, 1.0, 1001)
    async with ClientSession(url=apps.url("client_data")) as session:
        await session.pull()
        model(session, "source").data = {"x": x}  # type: ignore[attr-defined]
        await session.force_roundtrip()
        assert text(session, "summary") == "ndarray float64 len=1001 sum=500.5"
        doubled = model(session, "doubled").data["y"]  # type: ignore[attr-defined]
    assert isinstance(doubled, np.ndarray)
    np.testing.assert_array_equal(doubled, x * 2)
    assert x.tobytes() in [f for f in frames_out if isinstance(f, bytes)]
    assert (x * 2).tobytes() in [f for f in frames_in if isinstance(f, bytes)]


async def test_request_server_info(apps: Apps) -> None:
    async with ClientSession(url=apps.url("demo")) as session:
        info = await session.request_server_info()
        assert info["version_info"]["bokeh"] == bokeh.__version__
        assert await session.request_server_info() is info  # asked once, as bokeh.client does


async def test_force_roundtrip_connects_and_returns(app_server_apps: Apps) -> None:
    async with ClientSession(url=app_server_apps.url("demo")) as session:
        await session.force_roundtrip()
        assert session.connected


async def test_id_token_and_url(app_server_apps: Apps) -> None:
    named = ClientSession("my-session", url=app_server_apps.url("demo"))
    assert named.id == "my-session"
    assert get_session_id(named.token) == "my-session"
    assert "session_expiry" in get_token_payload(named.token)
    assert named.url == app_server_apps.url("demo").replace("http://", "ws://") + "/ws"
    generated = {ClientSession(url=app_server_apps.url("demo")).id for _ in range(3)}
    assert len(generated) == 3
    assert ClientSession(websocket_url="ws://example.com/app/ws").url == "ws://example.com/app/ws"
    with pytest.raises(ValueError, match="not both"):
        ClientSession(websocket_url="ws://example.com/app/ws", url="http://example.com/app")


async def test_request_arguments_reach_the_app(apps: Apps) -> None:
    url = apps.url("client_ticker")
    async with ClientSession(url=url, arguments={"name": "Ann", "n": "1"}) as session:
        await session.pull()
        assert text(session, "arguments") == repr([("n", ["1"]), ("name", ["Ann"])])


async def test_show_opens_the_session_page(apps: Apps) -> None:
    opened: list[tuple[str, int]] = []

    class Controller:
        def open(self, url: str, new: int = 0) -> None:
            opened.append((url, new))

    async with ClientSession(url=apps.url("demo")) as session:
        await session.pull()
        await session.show(Div(text="shown", name="shown"), new="window", controller=Controller())
        page = f"{apps.url('demo')}/?bokeh-session-id={session.id}"
        assert opened == [(page, 1)]
        async with ClientSession(session.id, url=apps.url("demo")) as other:
            await other.pull()
            assert text(other, "shown") == "shown"
        token = await asyncio.to_thread(fetch_token, page)  # the page serves this session
        assert get_session_id(token) == session.id


async def test_show_needs_a_document_to_add_to(app_server_apps: Apps) -> None:
    async with ClientSession(url=app_server_apps.url("demo")) as session:
        with pytest.raises(RuntimeError, match="pull"):
            await session.show(Div())


async def test_callbacks_on_the_client_document_run_and_their_changes_travel(
    app_server_apps: Apps,
) -> None:
    async with ClientSession(url=app_server_apps.url("demo")) as session:
        await session.pull()
        assert session.document is not None

        def move_slider() -> None:
            model(session, "frequency").value = 3.5  # type: ignore[attr-defined]

        session.document.add_next_tick_callback(move_slider)
        await eventually(lambda: text(session, "status") == "frequency = 3.5, resets: 0")

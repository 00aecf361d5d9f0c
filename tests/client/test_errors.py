"""Every failure gives a clear exception, bounded by the session's timeout, never a hang.

Real servers cover wrong paths, refused connections, signatures and ERROR replies; a
scripted websocket server covers what a correct server never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from bokeh.core.properties import Int
from bokeh.document import Document
from bokeh.model import Model
from bokeh.models import Div
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from app_server import ConfigurationError, protocol
from app_server.client import (
    ClientSession,
    ConnectionFailed,
    ConnectionLost,
    ErrorReason,
    ReplyTimeout,
    ServerError,
    pull_session,
)
from tests.conftest import EXAMPLES
from tests.servers import free_port, run_app_server

from .conftest import Apps


class ClientOnly(Model):
    """A model the servers cannot deserialize: they answer ERROR."""

    count = Int(0)


async def test_check_connection_errors_before_connecting() -> None:
    with pytest.raises(ConnectionFailed, match="call connect"):
        ClientSession(url="http://127.0.0.1:1/app").check_connection_errors()


async def test_refused_connection() -> None:
    url = f"http://127.0.0.1:{free_port()}/app"
    async with ClientSession(url=url) as session:
        await session.connect()  # records the failure, as bokeh.client does
        assert not session.connected
        assert session.error_reason is ErrorReason.NETWORK_ERROR
        with pytest.raises(ConnectionFailed, match="could not connect") as caught:
            await session.pull()
    assert isinstance(caught.value, OSError)


def test_refused_connection_sync() -> None:
    with pytest.raises(ConnectionFailed, match="is the server running"):
        pull_session(url=f"http://127.0.0.1:{free_port()}/app")


async def test_wrong_application_path(apps: Apps) -> None:
    async with ClientSession(url=apps.url("no_such_app")) as session:
        with pytest.raises(ConnectionFailed, match="Check your application path"):
            await session.pull()
        assert session.error_code == 404


async def test_wrong_application_path_is_refused(app_server_apps: Apps) -> None:
    async with ClientSession(url=app_server_apps.url("no_such_app")) as session:
        with pytest.raises(ConnectionFailed) as caught:
            await session.pull()
        assert session.error_reason is ErrorReason.HTTP_ERROR
        assert "no_such_app" in str(caught.value)


async def test_push_refused_by_the_server(apps: Apps) -> None:
    document = Document()
    document.add_root(ClientOnly())
    async with ClientSession(url=apps.url("demo")) as session:
        with pytest.raises(ServerError, match=r"can't resolve type .*ClientOnly") as caught:
            await session.push(document)
        assert isinstance(caught.value, RuntimeError)
        assert session.document is None
        assert session.connected  # a refused request leaves the connection usable
        await session.pull()


async def test_change_refused_by_the_server_is_raised_by_force_roundtrip(apps: Apps) -> None:
    async with ClientSession(url=apps.url("demo")) as session:
        await session.pull()
        assert session.document is not None
        session.document.add_root(ClientOnly())
        with pytest.raises(ServerError, match="refused 1 change"):
            await session.force_roundtrip()
        await session.force_roundtrip()  # reported once


@pytest.fixture(scope="module")
def signed_server() -> Iterator[tuple[str, str]]:
    key = secrets.token_urlsafe(32)
    env = {"BOKEH_SECRET_KEY": key, "BOKEH_SIGN_SESSIONS": "true"}
    with run_app_server(EXAMPLES / "demo.py", env=env) as server:
        yield server.url + "/demo", key


async def test_signed_sessions(
    signed_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key = signed_server
    async with ClientSession(url=url, secret_key=key, signed=True) as session:
        await session.pull()
        assert session.connected
    monkeypatch.setenv("BOKEH_SECRET_KEY", key)
    monkeypatch.setenv("BOKEH_SIGN_SESSIONS", "true")
    async with ClientSession(url=url) as session:  # settings read from the environment
        await session.pull()
    async with ClientSession(url=url, secret_key="not-" + key, signed=True) as session:
        with pytest.raises(ConnectionFailed, match="HTTP 403") as caught:
            await session.pull()
    assert "signature" in str(caught.value)
    monkeypatch.delenv("BOKEH_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="secret key"):
        ClientSession(url=url)


# -- a scripted server, for the misbehaviour a real server never shows ------------------

Script = Callable[[ServerConnection], Awaitable[None]]


async def send(ws: ServerConnection, message: protocol.Message) -> None:
    for frame in protocol.encode(message):
        await ws.send(frame)


async def receive(ws: ServerConnection) -> protocol.Message:
    receiver = protocol.Receiver()
    while True:
        result = receiver.receive_frame(await ws.recv())
        assert not isinstance(result, protocol.ProtocolViolation)
        if result is not None:
            return result


@contextlib.asynccontextmanager
async def scripted_server(script: Script, ack: bool = True) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        if ack:
            await send(ws, protocol.make_message(protocol.ACK))
        await script(ws)

    async with serve(handler, "127.0.0.1", 0, subprotocols=["bokeh"]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/app/ws"


async def test_server_closes_the_socket_during_a_request() -> None:
    async def script(ws: ServerConnection) -> None:
        await receive(ws)
        await ws.close(1011, "something broke")

    async with scripted_server(script) as url, ClientSession(websocket_url=url) as session:
        with pytest.raises(ConnectionLost, match="1011: something broke"):
            await session.pull()
        assert not session.connected
        assert session.error_code == 1011
        with pytest.raises(ConnectionFailed, match="something broke"):
            session.check_connection_errors()


async def test_malformed_reply() -> None:
    async def script(ws: ServerConnection) -> None:
        request = await receive(ws)
        header = {"msgid": "x", "msgtype": "PULL-DOC-REPLY", "reqid": request.msgid}
        await ws.send(json.dumps(header))
        await ws.send("{}")
        await ws.send("this is not JSON")
        await ws.wait_closed()

    async with scripted_server(script) as url, ClientSession(websocket_url=url) as session:
        with pytest.raises(
            ConnectionLost, match="malformed message: the content is not valid JSON"
        ):
            await session.pull()
        assert session.error_reason is ErrorReason.PROTOCOL_ERROR


async def test_error_reply() -> None:
    async def script(ws: ServerConnection) -> None:
        request = await receive(ws)
        reply = protocol.make_message(
            protocol.ERROR, {"text": "no document for you", "traceback": None}, reqid=request.msgid
        )
        await send(ws, reply)
        await ws.wait_closed()

    async with scripted_server(script) as url, ClientSession(websocket_url=url) as session:
        with pytest.raises(
            ServerError, match="refused PULL-DOC-REQ: no document for you"
        ) as caught:
            await session.pull()
        assert caught.value.text == "no document for you"


async def test_no_reply_times_out() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with scripted_server(script) as url:
        async with ClientSession(websocket_url=url, timeout=0.3) as session:
            with pytest.raises(ReplyTimeout, match=r"did not answer SERVER-INFO-REQ within 0\.3s"):
                await session.request_server_info()
            assert session.connected


async def test_no_ack_times_out() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with scripted_server(script, ack=False) as url:
        async with ClientSession(websocket_url=url, timeout=0.3) as session:
            with pytest.raises(ConnectionFailed, match="no ACK"):
                await session.pull()


async def test_something_other_than_ack() -> None:
    async def script(ws: ServerConnection) -> None:
        await send(ws, protocol.make_message(protocol.OK))
        await ws.wait_closed()

    async with (
        scripted_server(script, ack=False) as url,
        ClientSession(websocket_url=url) as session,
    ):
        with pytest.raises(ConnectionFailed, match="expected ACK, the server sent OK"):
            await session.pull()
        assert session.error_reason is ErrorReason.PROTOCOL_ERROR


async def test_close_sends_queued_changes_then_the_reason() -> None:
    seen: list[str] = []

    async def script(ws: ServerConnection) -> None:
        push = await receive(ws)
        await send(ws, protocol.make_message(protocol.OK, reqid=push.msgid))
        with contextlib.suppress(ConnectionClosed):
            while True:
                seen.append((await receive(ws)).msgtype)
        seen.append(f"closed {ws.close_code} {ws.close_reason}")

    document = Document()
    document.add_root(Div(text="before"))
    async with scripted_server(script) as url:
        session = ClientSession(websocket_url=url)
        await session.push(document)
        document.roots[0].text = "after"  # type: ignore[attr-defined]
        await session.close(why="bye")
        assert not session.connected
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
    assert seen == ["PATCH-DOC", "closed 1000 bye"]

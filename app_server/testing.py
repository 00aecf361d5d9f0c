"""Test Bokeh apps in-process, as Starlette's TestClient tests web apps.

``AppTestClient`` opens sessions of an app through the same code the server runs for
a browser (page request, token, session creation, PULL-DOC, PATCH-DOC), with no
socket and no browser. Each :class:`TestSession` holds a client-side copy of the
document, kept in sync both ways like BokehJS keeps its copy::

    async with AppTestClient("app.py") as client:
        session = await client.open_session(arguments={"N": "10"})
        await session.set("frequency", "value", 2.5)   # a user moves a slider
        await session.click("reset")                    # a user clicks a button
        assert session.model("status").text == "frequency = 1.0"
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlencode

from bokeh.core.serialization import Serializer
from bokeh.document import Document
from bokeh.document.callbacks import invoke_with_curdoc
from bokeh.document.events import DocumentPatchedEvent
from bokeh.events import ButtonClick, Event
from bokeh.server.callbacks import PeriodicCallback
from starlette.requests import Request

from . import protocol
from .app import create_app
from .applications import AppTarget
from .server import AppServer
from .session import ServerSession
from .views.sessions import page_session, page_token

__all__ = ["AppTestClient", "TestSession"]


class TestSession:
    """One session of the app, seen from a simulated browser."""

    __test__ = False  # not a pytest test class

    def __init__(self, session: ServerSession) -> None:
        self.server_session = session
        self.id = session.id
        self.synced = False
        self.closed: tuple[int, str] | None = None  # how the server ended it, if it did
        self.errors: list[str] = []
        self.document = Document()
        self._receiver = protocol.Receiver()
        self._outbox: list[protocol.Message] = []

    # -- what the server sees of us (the Peer protocol) ---------------------------------

    def send(self, frames: list[protocol.Frame]) -> None:
        for frame in frames:
            message = self._receiver.receive_frame(frame)
            if isinstance(message, protocol.ProtocolViolation):
                raise AssertionError(f"the server sent a malformed message: {message.reason}")
            if message is not None:
                self._receive(message)

    def drop(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def _receive(self, message: protocol.Message) -> None:
        if message.msgtype == protocol.PULL_DOC_REPLY:
            doc_json = protocol.document_of(message)
            self.document = Document.from_json(doc_json)
            self.document.models.flush_synced()  # the server knows every model it sent
            self.document.callbacks.on_change_dispatch_to(self)
        elif message.msgtype == protocol.PATCH_DOC:
            patch = protocol.patch_of(message)
            invoke_with_curdoc(
                self.document,
                lambda: self.document.apply_json_patch(patch, setter=self),  # type: ignore[arg-type]
            )
        elif message.msgtype == protocol.ERROR:
            self.errors.append(message.content.get("text", ""))

    def _document_patched(self, event: DocumentPatchedEvent) -> None:
        if event.setter is not cast(Any, self):  # Bokeh types setters as its own sessions
            self._outbox.append(protocol.patch_doc([event], self.document))

    # -- what a test does -----------------------------------------------------------------

    async def _pull(self) -> None:
        await self.server_session.pull(self, protocol.make_message(protocol.PULL_DOC_REQ))

    async def flush(self) -> None:
        """Send local changes to the server, as BokehJS does after a user action."""
        while self._outbox:
            message = self._outbox.pop(0)
            # through the encoder and the receiver, exactly as over a websocket
            receiver = protocol.Receiver()
            decoded = [receiver.receive_frame(f) for f in protocol.encode(message)][-1]
            assert isinstance(decoded, protocol.Message)
            await self.server_session.patch(self, decoded)

    def model(self, name: str) -> Any:
        """The client-side model with this ``name`` (fails if there is none or several)."""
        found = list(self.document.select({"name": name}))
        if len(found) != 1:
            raise LookupError(f"expected one model named {name!r}, found {len(found)}")
        return found[0]

    async def set(self, name: str, attr: str, value: Any) -> None:
        """Change a property as a user would (a slider moved, text typed), then settle."""
        setattr(self.model(name), attr, value)
        await self.flush()
        await self.settle()

    async def trigger(self, name: str, event: Event | Callable[[Any], Event]) -> None:
        """Send a UI event for the named model, with every field BokehJS would send.

        ``event`` is an event or a factory taking the model, e.g. ``ButtonClick`` or
        ``lambda plot: Tap(plot, x=1, y=2)``.
        """
        if callable(event) and not isinstance(event, Event):
            event = event(self.model(name))
        values = {k: v for k, v in vars(event).items() if not k.startswith("_")}
        serializer = Serializer(references=self.document.models.synced_references)
        data = {"type": "event", "name": event.event_name, "values": serializer.encode(values)}
        sent = {"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": data}
        message = protocol.make_message(
            protocol.PATCH_DOC, {"events": [sent]}, buffers=serializer.buffers
        )
        self._outbox.append(message)
        await self.flush()
        await self.settle()

    async def click(self, name: str) -> None:
        await self.trigger(name, ButtonClick)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until no next-tick callback is pending and none is running."""
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0)
        while self.server_session.busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {self.id} still busy after {timeout}s")
            await asyncio.sleep(0.005)

    async def run_periodic_callbacks(self) -> int:
        """Run every periodic callback of the session once, now; how many ran."""
        periodic = [
            cb
            for cb in self.server_session.document.session_callbacks
            if isinstance(cb, PeriodicCallback)
        ]
        for callback in periodic:
            await self.server_session.invoke(callback)
        await self.settle()
        return len(periodic)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (real time, e.g. for timeout callbacks) until ``predicate()`` is true."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)


class AppTestClient:
    """Runs an app's server in-process; ``async with`` runs its lifecycle hooks."""

    __test__ = False

    def __init__(self, app: AppTarget, **options: Any) -> None:
        self.app = create_app({"/app": app}, **options)
        self.server: AppServer = self.app.state.server
        self.context = self.server.contexts["/app"]
        self.sessions: list[TestSession] = []

    async def __aenter__(self) -> AppTestClient:
        await self.server.startup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.shutdown()

    async def open_session(
        self,
        *,
        arguments: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> TestSession:
        """A new session, as if a browser loaded the app's page with these arguments."""
        query = urlencode(arguments or {}, doseq=True)
        raw_headers = [(b"host", b"testserver")]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/app",
            "root_path": "",
            "query_string": query.encode(),
            "headers": raw_headers,
            "scheme": "http",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
        }
        request = Request(scope)
        token = await page_token(self.server, self.context, request, creates=True)
        server_session = await page_session(self.context, request, token)
        session = TestSession(server_session)
        self.context.attach(server_session, session)
        await session._pull()
        self.sessions.append(session)
        return session

    async def close_session(self, session: TestSession) -> None:
        """Close the simulated tab and discard the session, running its destroy hooks."""
        self.sessions.remove(session)
        await self.context.detach(session.server_session, session)
        await self.context.discard_session(session.server_session)

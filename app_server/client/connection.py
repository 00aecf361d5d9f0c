"""One websocket to a Bokeh server: open it, read and write messages, match replies.

A reader task owns the receiving side and a writer task drains an unbounded queue, so
a message's frames never interleave and messages leave in the order they were queued,
from whatever thread queued them. Replies find their request through ``reqid``.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from .. import protocol
from ..protocol import CloseCode, ProtocolViolation, Receiver
from .errors import ConnectionLost, ReplyTimeout, ServerError

__all__ = ["Connection", "ConnectionState", "Disconnect", "ErrorReason"]

log = logging.getLogger("app_server.client")

# Like Bokeh's own client, ignore HTTP(S)_PROXY: Bokeh servers are usually on loopback
# or a private network (websockets >= 15 would otherwise honour the environment).
_NO_PROXY: dict[str, Any] = (
    {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}
)


class ConnectionState(enum.Enum):
    NOT_YET_CONNECTED = "not yet connected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class ErrorReason(enum.Enum):
    """Why a connection ended, as ``bokeh.client.states.ErrorReason`` (plus protocol errors)."""

    NO_ERROR = "no error"
    HTTP_ERROR = "HTTP error"
    NETWORK_ERROR = "network error"
    PROTOCOL_ERROR = "protocol error"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """How a connection ended: ``code`` is the HTTP status or the websocket close code."""

    reason: ErrorReason = ErrorReason.NO_ERROR
    code: int | None = None
    detail: str = ""


OnReply = Callable[[protocol.Message], None]


class Connection:
    """The websocket of one client session.

    ``on_message`` receives every message that is not a reply (the server's PATCH-DOCs);
    ``on_close`` is called once, on the loop, when the connection ends for any reason.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        max_message_size: int | None,
        timeout: float,
        on_message: Callable[[protocol.Message], None],
        on_close: Callable[[], None],
    ) -> None:
        self.url = url
        self.state = ConnectionState.NOT_YET_CONNECTED
        self.ended: Disconnect | None = None
        self.refused_patches: list[str] = []
        self._token = token
        self._max_message_size = max_message_size
        self._timeout = timeout
        self._on_message = on_message
        self._on_close = on_close
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[list[protocol.Frame]] = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future[protocol.Message], OnReply | None]] = {}
        self._patches: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None

    # -- opening -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the websocket and wait for the server's ACK; failures end up in ``ended``."""
        if self.state is not ConnectionState.NOT_YET_CONNECTED:
            raise RuntimeError(f"open() needs a new connection; this one is {self.state.value}")
        self.state = ConnectionState.CONNECTING
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        try:
            problem = await self._handshake()
        except BaseException:  # cancelled: never leave the connection half-open
            if self._ws is not None:
                self._ws.transport.abort()
            self._end(Disconnect(ErrorReason.NETWORK_ERROR, None, "connecting was interrupted"))
            raise
        if problem is not None:
            self._end(problem)
            return
        assert self._ws is not None
        self.state = ConnectionState.CONNECTED
        loop = self._loop
        self._tasks = [loop.create_task(self._read(self._ws)), loop.create_task(self._write())]
        log.debug("connected to %s", self.url)

    async def _handshake(self) -> Disconnect | None:
        try:
            self._ws = await connect(
                self.url,
                subprotocols=[Subprotocol("bokeh"), Subprotocol(self._token)],
                max_size=self._max_message_size,
                open_timeout=self._timeout,
                close_timeout=self._timeout,
                **_NO_PROXY,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode(errors="replace").strip() if response.body else ""
            return Disconnect(
                ErrorReason.HTTP_ERROR, response.status_code, body or response.reason_phrase
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return Disconnect(ErrorReason.NETWORK_ERROR, None, f"{type(exc).__name__}: {exc}")
        problem = await self._wait_for_ack(self._ws)
        if problem is not None:
            await self._ws.close(CloseCode.PROTOCOL_ERROR)
        return problem

    async def _wait_for_ack(self, ws: ClientConnection) -> Disconnect | None:
        receiver = Receiver()
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    result = receiver.receive_frame(await ws.recv())
                    if result is not None:
                        break
        except TimeoutError:
            return Disconnect(
                ErrorReason.NETWORK_ERROR, None, f"no ACK from the server in {self._timeout}s"
            )
        except ConnectionClosed as exc:
            return _closed_by_server(*_close_of(exc))
        if isinstance(result, ProtocolViolation):
            return Disconnect(ErrorReason.PROTOCOL_ERROR, result.code, result.reason)
        if result.msgtype != protocol.ACK:
            return Disconnect(
                ErrorReason.PROTOCOL_ERROR, None, f"expected ACK, the server sent {result.msgtype}"
            )
        return None

    # -- sending -----------------------------------------------------------------------

    def send(self, message: protocol.Message, *, patch: bool = False) -> None:
        """Queue ``message`` from any thread; a PATCH-DOC's reply is checked, not awaited."""
        frames = protocol.encode(message)
        if self._loop is None:
            log.debug("not connected: dropping %s", message.msgtype)
        elif threading.get_ident() == self._thread_id:
            self._enqueue(frames, message.msgid if patch else None)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, frames, message.msgid if patch else None)

    def _enqueue(self, frames: list[protocol.Frame], patch_id: str | None) -> None:
        if self.state is not ConnectionState.CONNECTED:
            log.debug("disconnected from %s: a message was not sent", self.url)
            return
        if patch_id is not None:
            self._patches.add(patch_id)
        self._outbox.put_nowait(frames)

    async def request(
        self, message: protocol.Message, on_reply: OnReply | None = None
    ) -> protocol.Message:
        """Send ``message`` and return its reply; ``on_reply`` runs in the reader, in order.

        An ERROR reply raises :class:`ServerError`; ``on_reply`` is not called for it.
        """
        if self.state is not ConnectionState.CONNECTED:
            raise ConnectionLost(f"cannot send {message.msgtype}: {self.describe_end()}")
        future: asyncio.Future[protocol.Message] = asyncio.get_running_loop().create_future()
        self._pending[message.msgid] = (future, on_reply)
        self._enqueue(protocol.encode(message), None)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await future
        except TimeoutError:
            raise ReplyTimeout(
                f"the server did not answer {message.msgtype} within {self._timeout}s"
            ) from None
        finally:
            self._pending.pop(message.msgid, None)
        if reply.msgtype == protocol.ERROR:
            text = _error_text(reply)
            raise ServerError(f"the server refused {message.msgtype}: {text}", text)
        return reply

    async def _write(self) -> None:
        assert self._ws is not None
        while True:
            frames = await self._outbox.get()
            try:
                for frame in frames:
                    await self._ws.send(frame)
            except ConnectionClosed:
                return  # the reader reports the end
            except Exception:
                log.exception("sending to %s failed; closing the connection", self.url)
                await self._ws.close(CloseCode.INTERNAL_ERROR, "client failed to send")
                return
            finally:
                self._outbox.task_done()

    # -- receiving ---------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        receiver = Receiver()
        ending = None
        try:
            async for frame in ws:
                result = receiver.receive_frame(frame)
                if result is None:
                    continue
                if isinstance(result, ProtocolViolation):
                    detail = f"the server sent a malformed message: {result.reason}"
                    ending = Disconnect(ErrorReason.PROTOCOL_ERROR, result.code, detail)
                    log.error("%s; closing the connection to %s", detail, self.url)
                    await ws.close(result.code, protocol.close_reason(result.reason))
                    break
                self._dispatch(result)
        except ConnectionClosed:
            pass
        finally:
            if ending is None:
                ending = (
                    Disconnect()
                    if self._closing
                    else _closed_by_server(ws.close_code, ws.close_reason or "")
                )
            self._end(ending)

    def _dispatch(self, message: protocol.Message) -> None:
        reqid = message.reqid
        if reqid is not None and reqid in self._pending:
            future, on_reply = self._pending.pop(reqid)
            if future.done():
                return
            try:
                if on_reply is not None and message.msgtype != protocol.ERROR:
                    on_reply(message)
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(message)
        elif reqid is not None and reqid in self._patches:
            self._patches.discard(reqid)
            if message.msgtype == protocol.ERROR:
                text = _error_text(message)
                log.warning("the server refused a change from this client: %s", text)
                self.refused_patches.append(text)
        elif message.msgtype == protocol.PATCH_DOC:
            try:
                self._on_message(message)
            except Exception:
                log.exception("applying a PATCH-DOC from %s failed", self.url)
        else:
            log.debug("ignoring an unexpected %s from %s", message.msgtype, self.url)

    # -- closing -----------------------------------------------------------------------

    async def close(self, why: str = "closed") -> None:
        """Send what is queued, close with 1000 and wait for the reader to finish."""
        if self.state is not ConnectionState.CONNECTED or self._closing:
            return
        self._closing = True
        assert self._ws is not None
        drained = asyncio.ensure_future(self._outbox.join())
        reader = self._tasks[0]
        await asyncio.wait([drained, reader], timeout=self._timeout, return_when="FIRST_COMPLETED")
        if not drained.done():
            drained.cancel()
            log.warning("closing the connection to %s with unsent messages", self.url)
        await self._ws.close(CloseCode.NORMAL, protocol.close_reason(why))
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _end(self, ending: Disconnect) -> None:
        if self.state is ConnectionState.DISCONNECTED:
            return
        self.state = ConnectionState.DISCONNECTED
        self.ended = ending
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        lost = ConnectionLost(f"no reply: {self.describe_end()}")
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(lost)
        self._pending.clear()
        log.debug("connection to %s ended: %s", self.url, self.describe_end())
        self._on_close()

    def describe_end(self) -> str:
        """Why the connection is not usable, in words for an error message."""
        ended = self.ended
        if self.state is not ConnectionState.DISCONNECTED or ended is None:
            return f"the connection to {self.url} is {self.state.value}"
        if ended.reason is ErrorReason.NO_ERROR:
            return f"the connection to {self.url} was closed by this client"
        return ended.detail


def _closed_by_server(code: int | None, reason: str) -> Disconnect:
    why = (
        f"code {code}" + (f": {reason}" if reason else "") if code is not None else "no close code"
    )
    return Disconnect(ErrorReason.NETWORK_ERROR, code, f"the server closed the connection ({why})")


def _close_of(exc: ConnectionClosed) -> tuple[int | None, str]:
    return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (None, "")


def _error_text(message: protocol.Message) -> str:
    content = message.content
    text = content.get("text") if isinstance(content, dict) else None
    return str(text) if text else "(no explanation given)"

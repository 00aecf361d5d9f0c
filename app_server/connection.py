"""One websocket attached to a session, from accept to release.

:meth:`Connection.run` is the connection's whole life. However it ends (the client closes, the
server shuts down, a slow reader is dropped, the client breaks the protocol, the session is
discarded), it leaves ``run`` through the same release, which detaches it from its session and
the server's registry exactly once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
from collections.abc import Coroutine, MutableMapping
from typing import TYPE_CHECKING, Any

from . import protocol
from .extensions import FRAMES
from .protocol import CloseCode, ProtocolViolation, Receiver, close_reason

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .contexts import AppContext
    from .metrics import Metrics
    from .session import ServerSession

__all__ = ["Connection", "ConnectionState"]

log = logging.getLogger("app_server.connection")

CLOSE_TIMEOUT = 1.0  # seconds a close may wait on the transport
VIOLATION_DRAIN = 5.0  # seconds replies to earlier, valid messages may take before the close
# what a client may send; any other type (ACK, OK, PULL-DOC-REPLY...) closes the connection
REQUESTS = frozenset(
    {protocol.PATCH_DOC, protocol.PULL_DOC_REQ, protocol.PUSH_DOC, protocol.SERVER_INFO_REQ}
)


class ConnectionState(enum.Enum):
    OPENING = "opening"  # admitted, not yet accepted
    OPEN = "open"  # accepted: messages flow both ways
    CLOSING = "closing"  # a close was started; nothing new is queued
    CLOSED = "closed"  # released from its session and the registry


def _start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task that runs at once, up to its first real wait (Python 3.12+; later elsewhere).

    A message queued by a callback is then written in the same pass of the loop as the
    callback, while the CPU's caches are warm, instead of waking a writer task in the next.
    """
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, eager_start=True)
    return loop.create_task(coro)


def _release_handshake(scope: MutableMapping[str, Any]) -> None:
    """Empty the handshake's headers and subprotocols (the token, again) in the scope: read by
    admission only, they would be held for the websocket's life (~1.8 KB). Only under
    app_server's transport, whose server holds no middleware of a host that might read them."""
    for key in ("headers", "subprotocols"):
        value = scope.get(key)
        if isinstance(value, list):
            value.clear()


class Connection:
    """Frames queued by ``send`` are written in order; one message's frames never interleave.

    A writer task exists only while there is something to write: an idle connection holds
    none. What a client has not yet taken is bounded twice: in messages (``queue_size``) and in
    bytes (``queue_bytes``, counting the message being written). A client that would go over
    either is dropped at once: its queue is released and it leaves its session, so a slow or
    stalled reader cannot grow the server's memory or hold on to its session. A message that
    finds nothing pending is always taken, however large. And as in Bokeh's server, the next
    request is read only once the replies queued before it are written, so a client cannot make
    the server build replies faster than it takes them.
    """

    __slots__ = (
        "__weakref__",  # leak tests watch for it
        "_closing",
        "_corked",
        "_drain_target",
        "_drained",
        "_dropped",
        "_outbox",
        "_pending_bytes",
        "_queue_bytes",
        "_queue_size",
        "_queued",
        "_receiver",
        "_registry",
        "_task",
        "_write_now",
        "_writer",
        "_written",
        "close_code",
        "context",
        "metrics",
        "session",
        "state",
        "synced",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        session: ServerSession,
        context: AppContext,
        *,
        queue_size: int,
        queue_bytes: int,
        max_message_size: int,
        metrics: Metrics,
        registry: set[Connection],
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.context = context
        self.metrics = metrics
        self.state = ConnectionState.OPENING
        self.synced = False
        self.close_code: int | None = None  # how it ended, once known
        self._registry = registry
        self._receiver = Receiver(max_message_size)
        self._task: asyncio.Task[Any] | None = None  # the one running ``run``
        self._dropped = False
        self._closing: asyncio.Task[None] | None = None  # a dropped client's close frame
        # a list, not an asyncio.Queue or a deque: nothing waits on it (the writer exists only
        # while there is something to write), it rarely holds more than one message, and an
        # empty list is 56 bytes where an empty deque is 760
        self._outbox: list[tuple[list[protocol.Frame], int]] = []  # a message's frames, size
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._pending_bytes = 0  # queued, and the message being written
        self._queued = 0  # messages ever queued, and ever written: the reader waits on these
        self._written = 0
        self._drained: asyncio.Future[None] | None = None  # the reader, waiting for _written
        self._drain_target = 0
        self._writer: asyncio.Task[None] | None = None
        self._corked = False  # while a request is handled: its replies are written together
        # app_server's transport: a message's frames written at once, or sent in one message
        frames = websocket.scope.get("extensions", {}).get(FRAMES)
        self._write_now = None if frames is None else frames["write"]

    def __repr__(self) -> str:
        return f"<Connection session={self.session.id} {self.state.value}>"

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    # -- the life of a connection ------------------------------------------------------

    async def run(self) -> None:
        """Accept the websocket, serve it until it ends, then release it (once, always).

        The reading loop is here rather than in a method of its own, and reads with the ASGI
        ``receive`` itself rather than Starlette's wrapper (which only tracks a state nothing
        here reads): an idle websocket holds two coroutines fewer, each with its frame.
        """
        await self._open()
        receive = self.websocket._receive
        try:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    if self.close_code is None:
                        self.close_code = event.get("code")
                    break
                frame = event.get("text")
                if frame is None:
                    frame = event.get("bytes") or b""
                # not held while idle: the last request (a pushed document, a large patch)
                del event
                if not await self._receive_frame(frame):
                    break
                del frame
        except asyncio.CancelledError:
            if not self._dropped:
                raise
            if self._task is not None:
                self._task.uncancel()  # our own cancel (drop): the release below is the way out
        except Exception:
            session = self.session
            log.exception(
                "session %s: the websocket reader failed", session.id, extra=session.log_extra
            )
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self._release()
            if self._closing is not None:  # dropped: the close frame goes when the client reads
                await self._closing

    async def _open(self) -> None:
        if self.state is not ConnectionState.OPENING:
            raise RuntimeError(f"expected state {ConnectionState.OPENING}, got {self.state}")
        session = self.session
        await self.websocket.accept(subprotocol="bokeh")
        if self._write_now is not None:
            _release_handshake(self.websocket.scope)
        self.state = ConnectionState.OPEN
        self._task = asyncio.current_task()
        self._registry.add(self)
        self.metrics.websocket_opened += 1
        self.context.attach(session, self)
        log.info(
            "app %s, session %s: websocket opened",
            self.context.name,
            session.id,
            extra=session.log_extra,
        )
        self.send(protocol.encode(protocol.make_message(protocol.ACK)))

    def drop(self, code: int, reason: str) -> None:
        """End the connection now: release its queue and its session without waiting for the
        client, which may never read again. The close frame follows what the transport holds;
        a transport the client does not drain is aborted (``app_server.transport``)."""
        if self.state is ConnectionState.CLOSED or self._dropped:
            return
        self._dropped = True
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSING
            self.close_code = code
            self._closing = asyncio.get_running_loop().create_task(self._close_socket(code, reason))
        self._stop_writer()
        if self._task is not None:
            self._task.cancel()

    async def close(
        self, code: int = CloseCode.NORMAL, reason: str = "", *, drain: float = 0
    ) -> None:
        """Close the websocket; with ``drain`` seconds, what is queued goes first. The client's
        answer ends ``run``, which releases the connection."""
        if self.state is not ConnectionState.OPEN:
            return
        self.state = ConnectionState.CLOSING  # nothing new is queued; the writer goes on
        self.close_code = code
        if drain and self._outbox:
            self._start_writer()  # what a request in hand queued (corked) goes first too
        if drain and self._writer is not None and not self._writer.done():
            _, pending = await asyncio.wait({self._writer}, timeout=drain)
            if pending:
                log.debug("session %s: gave up draining before close", self.session.id)
        self._stop_writer()
        await self._close_socket(code, reason)

    async def _release(self) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSED
        self._stop_writer()
        self._registry.discard(self)
        self.metrics.websocket_closed += 1
        session = self.session
        try:
            await self.context.detach(session, self)
        except Exception:
            log.exception("session %s: releasing the connection failed", session.id)
        log.info(
            "app %s, session %s: websocket closed (code %s)",
            self.context.name,
            session.id,
            self.close_code,
            extra=session.log_extra,
        )

    # -- incoming ----------------------------------------------------------------------

    async def _receive_frame(self, frame: str | bytes) -> bool:
        """Feed one frame to the session; False once the connection is to end."""
        self.metrics.bytes_in += len(frame)
        result = self._receiver.receive_frame(frame)
        if result is None:
            return True
        self.metrics.messages_in += 1
        if not isinstance(result, ProtocolViolation) and result.msgtype not in REQUESTS:
            # a reply type, or no type at all: the client broke the protocol (as in Bokeh)
            text = f"the server does not accept {result.msgtype!r} messages"
            result = ProtocolViolation(CloseCode.PROTOCOL_ERROR, text)
        if isinstance(result, ProtocolViolation):
            log.warning(
                "session %s: closing the websocket: %s",
                self.session.id,
                result.reason,
                extra=self.session.log_extra,
            )
            await self.close(result.code, result.reason, drain=VIOLATION_DRAIN)
            self.close_code = int(result.code)
            return False
        if self.state is not ConnectionState.OPEN:
            return True  # closing: requests still in the pipe would be answered to nobody
        self._corked = True  # a request's replies (changes, then OK) go in one write
        try:
            await self._dispatch(result)
        finally:
            self._uncork()
        del frame, result
        if self._written < self._queued:  # replies still unwritten: read no further
            await self._wait_written(self._queued)
        return True

    async def _dispatch(self, message: protocol.Message) -> None:
        """Handle one message; a failure is logged and answered with ERROR, never raised."""
        session = self.session
        msgtype = message.msgtype
        log.debug(
            "session %s: received %s %s",
            session.id,
            msgtype,
            message.msgid,
            extra=session.log_extra,
        )
        try:
            if msgtype == protocol.PATCH_DOC:
                await session.patch(self, message)
            elif msgtype == protocol.PULL_DOC_REQ:
                await session.pull(self, message)
            elif msgtype == protocol.PUSH_DOC:
                await session.push(self, message)
            else:  # SERVER-INFO-REQ, the last of REQUESTS
                self.send(protocol.encode(protocol.server_info_reply(message.msgid)))
        except Exception as exc:
            log.exception(
                "session %s: handling %s failed", session.id, msgtype, extra=session.log_extra
            )
            text = f"{msgtype} failed: {type(exc).__name__}: {exc}"
            self.send(protocol.encode(protocol.error(message.msgid, text)))

    # -- outgoing ----------------------------------------------------------------------

    def send(self, frames: list[protocol.Frame]) -> None:
        if self.state is not ConnectionState.OPEN:
            return
        size = sum(map(len, frames))
        pending = self._pending_bytes
        if len(self._outbox) >= self._queue_size or (
            pending and pending + size > self._queue_bytes
        ):
            self.metrics.slow_clients_dropped += 1
            log.warning(
                "session %s: client is %d messages (%d bytes) behind; disconnecting it",
                self.session.id,
                len(self._outbox),
                pending,
                extra=self.session.log_extra,
            )
            self.drop(CloseCode.POLICY_VIOLATION, "client too slow to read its messages")
            return
        self._queued += 1
        if not self._outbox and not self._corked and self._write_now is not None:
            if self._write_now(frames):  # written at once: the common case, with no task
                self._wrote(1, size)
                return
        self._outbox.append((frames, size))
        self._pending_bytes = pending + size
        if not self._corked:
            self._start_writer()

    def _uncork(self) -> None:
        """Write what was queued while corked: at once and in one write when the transport
        takes it (a reply's system call costs more than the rest of a small reply)."""
        self._corked = False
        queue = self._outbox
        if queue and (self._writer is None or self._writer.done()):
            if self._write_now is not None:
                frames = queue[0][0] if len(queue) == 1 else [f for m, _ in queue for f in m]
                if self._write_now(frames):
                    count, size = len(queue), self._pending_bytes
                    queue.clear()
                    self._pending_bytes = 0
                    self._wrote(count, size)
                    return
            self._start_writer()

    def _wrote(self, count: int, size: int) -> None:
        self._written += count
        self.metrics.bytes_out += size
        self.metrics.messages_out += count

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            writer = _start_eagerly(self._write())
            self._writer = None if writer.done() else writer  # idle: keep no task

    async def _write(self) -> None:
        """Write what is queued, then end (``send`` starts another writer when needed)."""
        send, queue, batches = self.websocket.send, self._outbox, self._write_now is not None
        try:
            while queue:
                frames, size = queue[0]
                if batches:  # app_server's transport: the message in one write
                    await send({"type": "websocket.send", FRAMES: frames})
                else:
                    for frame in frames:
                        if isinstance(frame, str):
                            await send({"type": "websocket.send", "text": frame})
                        else:
                            await send({"type": "websocket.send", "bytes": frame})
                self._pending_bytes -= size
                del queue[0]
                self._wrote(1, size)
                if self._written >= self._drain_target:
                    self._wake_reader()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write
            log.debug("session %s: writer stopped: %r", self.session.id, exc)
            if self.state is ConnectionState.OPEN:
                self.state = ConnectionState.CLOSING
            self._discard_queue()  # the reader goes on, to read the disconnect that follows

    async def _wait_written(self, count: int) -> None:
        """Wait until ``count`` messages are written (or the connection ends)."""
        self._drain_target = count
        self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def _stop_writer(self) -> None:
        """Stop writing and release what is queued, at once."""
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        self._discard_queue()

    def _discard_queue(self) -> None:
        self._outbox.clear()
        self._pending_bytes = 0
        self._queued = self._written  # what was cleared will never be written
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    async def _close_socket(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.websocket.close(code, close_reason(reason)), CLOSE_TIMEOUT)
        except Exception as exc:
            log.debug("session %s: close failed: %r", self.session.id, exc)

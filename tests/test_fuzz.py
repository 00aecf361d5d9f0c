"""A live-server fuzzer: thousands of random and mutated Bokeh messages over real websockets.

``app-server serve examples/demo.py`` runs in a subprocess. Fuzz workers open connection after
connection (reconnecting after each close) and send mutations of valid PULL-DOC-REQ, PATCH-DOC
and PUSH-DOC messages: broken JSON, wrong types, unknown message types, ``num_buffers`` lies,
binary frames out of place, patches naming unknown models and attributes, events for the models
of another document, huge strings within the size limit, oversized messages, and malformed
websocket frames. They speak through :class:`RawWebSocket`, a minimal RFC 6455 client written
here, so that they can send frames no library would (reserved bits, unmasked frames, invalid
UTF-8) and see the exact close code the server sends, valid or not.

An oracle predicts each connection's fate from the frames alone: the server's own sans-I/O
``Receiver`` (the code under test at the protocol layer) plus the websocket rules for frames.
It says which messages are complete (each must get exactly one reply naming it, of a type that
fits), and with which close code the server must hang up, if at all. Meanwhile an honest session
moves the demo's slider again and again and must see every reply it expects and nothing else.

The run is reproducible: ``FUZZ_SEED=<n> pytest tests/test_fuzz.py`` replays a run; every
assertion message names the seed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import re
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.models import Div
from bokeh.util.token import get_session_id

from app_server import protocol
from app_server.protocol import Message, ProtocolViolation, Receiver
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server
from tests.wsclient import BokehSocket, fetch_token

SEED = int(os.environ.get("FUZZ_SEED", "20261122"))
LIMIT = 256 * 1024  # --websocket-max-message-size of the fuzzed server
WORKERS = 3  # fuzz connections open at the same time
CONNECTIONS_PER_WORKER = 200
MAX_CASES_PER_CONNECTION = 16
RSS_GROWTH_BOUND_MB = 100  # over the warmed-up server's RSS, through the whole fuzz run

# RFC 6455 section 7.4: codes a close frame may carry (1004 is reserved; 1005, 1006 and 1015
# must never be sent), plus the registered 1012-1014 and the application range 3000-4999
VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)})


def seed_note(seed: int = SEED) -> str:
    return f"(fuzz seed {seed}; replay with FUZZ_SEED={seed})"


# -- a raw websocket client --------------------------------------------------------------------

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class WireFrame:
    """One websocket frame as sent; ``violation`` is the close code it must earn, if any."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    violation: int | None = None


def text(value: str | bytes) -> WireFrame:
    return WireFrame(TEXT, value.encode() if isinstance(value, str) else value)


def binary(value: bytes) -> WireFrame:
    return WireFrame(BINARY, value)


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")


def encode_frame(frame: WireFrame) -> bytes:
    head = bytearray([(0x80 if frame.fin else 0) | (frame.rsv << 4) | frame.opcode])
    n, mask_bit = len(frame.payload), 0x80 if frame.masked else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if not frame.masked:
        return bytes(head) + frame.payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(frame.payload, key)


class HandshakeRefused(Exception):
    def __init__(self, status: int, body: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status, self.body, self.headers = status, body, headers


@dataclass(frozen=True)
class Closed:
    """How a connection ended: ``clean`` means a close frame arrived (``code`` may be None)."""

    code: int | None
    reason: str
    clean: bool

    def describe(self) -> str:
        if not self.clean:
            return "dropped without a close frame"
        return f"close {self.code}" + (f" {self.reason!r}" if self.reason else "")


class RawWebSocket:
    """A minimal RFC 6455 client: any frame out, every frame in, Bokeh messages assembled."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.receiver = Receiver()
        self.closed: Closed | None = None
        self._fragments: list[bytes] = []
        self._opcode = TEXT

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        subprotocols: Sequence[str] = (),
        *,
        origin: str | None = None,
        headers: Sequence[str] = (),
        rcvbuf: int | None = None,
        source: str | None = None,
        timeout: float = 15.0,
    ) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small receive window: the server's data backs up sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:  # another loopback address (127.0.0.2, ...): another client to the server
            sock.bind((source, 0))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), timeout
            )
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        if origin is not None:
            lines.append(f"Origin: {origin}")
        lines += headers
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            response_headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            if status == 101:
                return cls(reader, writer)
            length = response_headers.get("content-length")
            if length is not None:
                body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
            else:
                body = await asyncio.wait_for(reader.read(1 << 16), timeout)
        except BaseException:
            writer.close()
            raise
        writer.close()
        raise HandshakeRefused(status, body.decode(errors="replace"), response_headers)

    async def send_frames(self, frames: Iterable[WireFrame]) -> None:
        """Write frames; a server that already hung up is not an error here."""
        try:
            for frame in frames:
                if self.writer.is_closing():
                    return  # the server hung up
                self.writer.write(encode_frame(frame))
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.writer.drain()
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def send_message(self, message: Message) -> None:
        await self.send_frames(message_frames(message))

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        key = await self.reader.readexactly(4) if b1 & 0x80 else None
        payload = await self.reader.readexactly(length)
        return b0 & 0x0F, bool(b0 & 0x80), _mask(payload, key) if key else payload

    async def receive(self, timeout: float = 15.0) -> Message | Closed:
        """The next whole Bokeh message, or how the connection ended."""
        if self.closed is not None:
            return self.closed
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"nothing from the server in {timeout}s")
            try:
                opcode, fin, payload = await asyncio.wait_for(self._read_frame(), remaining)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = Closed(None, "", clean=False)
                self.abort()
                return self.closed
            if opcode == PING:
                await self.send_frames([WireFrame(PONG, payload)])
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.closed = Closed(code, payload[2:].decode(errors="replace"), clean=True)
                await self.send_frames([WireFrame(CLOSE, payload[:2])])  # the closing handshake
                self.writer.close()
                return self.closed
            if opcode != CONTINUATION:
                self._opcode, self._fragments = opcode, []
            self._fragments.append(payload)
            if not fin:
                continue
            data = b"".join(self._fragments)
            result = self.receiver.receive_frame(data.decode() if self._opcode == TEXT else data)
            if isinstance(result, ProtocolViolation):
                raise AssertionError(f"the server sent a malformed message: {result.reason}")
            if result is not None:
                return result

    async def receive_message(self, timeout: float = 15.0) -> Message:
        result = await self.receive(timeout)
        if isinstance(result, Closed):
            raise AssertionError(f"the server closed the connection: {result.describe()}")
        return result

    async def request(self, message: Message, timeout: float = 15.0) -> Message:
        """Send ``message`` and return its reply, skipping other messages."""
        await self.send_message(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.receive_message(max(0.1, deadline - time.monotonic()))
            if reply.reqid == message.msgid:
                return reply

    async def close(self, code: int = 1000, timeout: float = 10.0) -> Closed:
        """Start (or finish) the closing handshake and wait for the server's close frame."""
        if self.closed is None:
            await self.send_frames([WireFrame(CLOSE, code.to_bytes(2, "big"))])
            deadline = time.monotonic() + timeout
            while self.closed is None and time.monotonic() < deadline:
                try:
                    await self.receive(max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
        self.abort()
        return self.closed or Closed(None, "", clean=False)

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def dumps(value: Any) -> str:
    """JSON as a careless client writes it: NaN and Infinity allowed, lone surrogates escaped."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def bokeh_frames(
    header: Any, metadata: Any = None, content: Any = None, buffers: Sequence[bytes] = ()
) -> list[WireFrame]:
    frames = [text(dumps(header)), text(dumps({} if metadata is None else metadata))]
    frames.append(text(dumps({} if content is None else content)))
    for n, payload in enumerate(buffers):
        frames += [text(dumps({"id": f"b{n}"})), binary(payload)]
    return frames


def message_frames(message: Message) -> list[WireFrame]:
    return [text(f) if isinstance(f, str) else binary(f) for f in protocol.encode(message)]


async def open_raw(server: RunningServer, token: str, app: str = "/demo") -> RawWebSocket:
    """A Bokeh connection: handshake, then the server's ACK."""
    socket_ = await RawWebSocket.connect(server.port, f"{app}/ws", ["bokeh", token])
    first = await socket_.receive_message()
    assert first.msgtype == protocol.ACK, f"expected ACK first, got {first.msgtype}"
    return socket_


# -- the documents the fuzzer aims at ----------------------------------------------------------


def find_model(doc_json: Any, *, name: str | None = None, kind: str | None = None) -> str:
    """The id of the model called ``name`` (or of the first of type ``kind``) in a document."""
    stack = [doc_json]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and "id" in node:
                attributes = node.get("attributes") or {}
                if (name is not None and attributes.get("name") == name) or (
                    kind is not None and node.get("name") == kind
                ):
                    return str(node["id"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no model {name or kind} in the document")


@dataclass(frozen=True)
class DemoIds:
    """The models of one session of examples/demo.py."""

    slider: str
    button: str
    status: str
    source: str
    plot: str

    @classmethod
    def of(cls, doc_json: Any) -> DemoIds:
        return cls(
            slider=find_model(doc_json, name="frequency"),
            button=find_model(doc_json, name="reset"),
            status=find_model(doc_json, name="status"),
            source=find_model(doc_json, kind="ColumnDataSource"),
            plot=find_model(doc_json, name="plot"),
        )

    def all(self) -> list[str]:
        return [self.slider, self.button, self.status, self.source, self.plot]


def slider_event(ids: DemoIds, value: Any) -> dict[str, Any]:
    return {"kind": "ModelChanged", "model": {"id": ids.slider}, "attr": "value", "new": value}


def click_event(ids: DemoIds) -> dict[str, Any]:
    return {
        "kind": "MessageSent",
        "msg_type": "bokeh_event",
        "msg_data": {
            "type": "event",
            "name": "button_click",
            "values": {"type": "map", "entries": [["model", {"id": ids.button}]]},
        },
    }


# -- the oracle --------------------------------------------------------------------------------

REPLIES: dict[str, frozenset[str]] = {
    protocol.PULL_DOC_REQ: frozenset({protocol.PULL_DOC_REPLY, protocol.ERROR}),
    protocol.SERVER_INFO_REQ: frozenset({protocol.SERVER_INFO_REPLY}),
    protocol.PATCH_DOC: frozenset({protocol.OK, protocol.ERROR}),
    protocol.PUSH_DOC: frozenset({protocol.OK, protocol.ERROR}),
}
ONLY_ERROR = frozenset({protocol.ERROR})
ONLY_OK = frozenset({protocol.OK})


@dataclass
class Prediction:
    """What the server must do with a connection's frames."""

    replies: list[tuple[str, frozenset[str]]]  # (msgid, reply types that fit), in order
    close: int | None = None  # the code the server must close with; None: it stays open
    reason: str = ""  # the close reason, when app_server's Receiver closes
    # uvicorn's websocket layer checks frames as they arrive, ahead of the app: a later frame
    # that breaks RFC 6455 or the size limit may close the connection first, with its own code
    racing: set[int] = field(default_factory=set)

    @property
    def by_receiver(self) -> bool:
        return bool(self.reason)

    @property
    def codes(self) -> set[int]:
        return set() if self.close is None else {self.close, *self.racing}


def websocket_violation(frame: WireFrame, fragments: list[bytes]) -> int | None:
    """The close code uvicorn's websocket layer answers ``frame`` with, if any."""
    if frame.violation is not None:
        return frame.violation
    if sum(map(len, fragments)) > LIMIT:
        return 1009
    if frame.fin and frame.opcode in (TEXT, CONTINUATION):
        try:
            b"".join(fragments).decode()
        except UnicodeDecodeError:
            return 1007
    return None


def predict(frames: Sequence[WireFrame], labels: dict[str, frozenset[str]]) -> Prediction:
    """The websocket layer's checks (uvicorn + websockets), then app_server's Receiver."""
    receiver = Receiver(LIMIT)
    prediction = Prediction([])
    fragments: list[bytes] = []
    opcode = TEXT
    for frame in frames:
        if frame.opcode != CONTINUATION:
            opcode, fragments = frame.opcode, []
        fragments.append(frame.payload)
        code = websocket_violation(
            WireFrame(opcode, b"", frame.fin, violation=frame.violation), fragments
        )
        if prediction.close is not None:  # the connection is failing: only a race remains
            if code is not None:
                prediction.racing.add(code)
                if code != 1007:
                    return prediction
            continue
        if code is not None:
            prediction.close = code
            if code != 1007:
                return prediction
            # UTF-8 is checked when a message is handed to the app: a size or framing error
            # further on, which the frame parser sees first, may still close the connection
            continue
        if not frame.fin:
            continue
        data = b"".join(fragments)
        result = receiver.receive_frame(data.decode() if opcode == TEXT else data)
        if isinstance(result, ProtocolViolation):
            prediction.close, prediction.reason = int(result.code), result.reason
        elif isinstance(result, Message):
            allowed = labels.get(result.msgid) or REPLIES.get(result.msgtype, ONLY_ERROR)
            prediction.replies.append((result.msgid, allowed))
    return prediction


# -- random values and mutations ---------------------------------------------------------------

MODEL_NAMES = ["Div", "Slider", "ColumnDataSource", "Button", "Plot", "NoSuchModel", "Range1d"]
STRINGS = ["", "x", "value", "text", "\u00e9\u00e8", "\ud800", "\x00", "NaN", "p1001", "💥" * 3]


def random_string(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(STRINGS)
    if roll < 0.8:
        return "".join(chr(rng.randrange(0x20, 0x2FF)) for _ in range(rng.randrange(1, 30)))
    return "".join(chr(rng.randrange(0, 0x10FFFF)) for _ in range(rng.randrange(1, 8)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, with a taste for the shapes Bokeh's deserializer looks for."""
    kinds = 12 if depth < 3 else 6
    kind = rng.randrange(kinds)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308, math.nan, math.inf, -math.inf, rng.random()])
    if kind in (4, 5):
        return random_string(rng)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {random_string(rng): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 8:
        return {"id": rng.choice(["p1001", "p9999", "", random_string(rng)])}
    if kind == 9:
        return {
            "type": "object",
            "name": rng.choice(MODEL_NAMES),
            "id": f"fz{rng.randrange(10**6)}",
            "attributes": {random_string(rng): random_json(rng, depth + 1)},
        }
    if kind == 10:
        return rng.choice(
            [
                {
                    "type": "ndarray",
                    "array": {"type": "bytes", "data": "AAAA"},
                    "shape": [2, 2],
                    "dtype": "float64",
                    "order": "little",
                },
                {
                    "type": "ndarray",
                    "array": [1, 2],
                    "shape": [10**9],
                    "dtype": "int32",
                    "order": "big",
                },
                {"type": "bytes", "data": "!!not base64!!"},
                {"type": "bytes", "data": {"id": "missing-buffer"}},
                {"type": "number", "value": rng.choice(["nan", "-inf", "+inf", "bogus"])},
                {"type": "slice", "start": -5, "stop": 10**12, "step": 0},
                {"type": "map", "entries": [[random_json(rng, depth + 1), 1]]},
                {"type": "set", "entries": [[], {}]},
                {
                    "type": "typed_array",
                    "array": {"type": "bytes", "data": "AAA="},
                    "order": "little",
                    "dtype": "float32",
                },
                {"type": rng.choice(["value", "field", "expr", "symbol", "bogus"])},
            ]
        )
    return [[[random_json(rng, depth + 3)]]]


def nested(depth: int) -> Any:
    """Nested lists ``depth`` deep (kept well below the interpreter's recursion limit)."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def mutate(rng: random.Random, value: Any) -> Any:
    """A copy of ``value`` with one node replaced, removed, retyped or duplicated."""
    value = json.loads(json.dumps(value))
    paths: list[tuple[Any, Any]] = []  # (container, key)
    stack = [value]
    while stack and len(paths) < 400:
        node = stack.pop()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            paths.append((node, key))
            stack.append(child)
    if not paths:
        return random_json(rng)
    container, key = rng.choice(paths)
    roll = rng.random()
    if roll < 0.55:
        container[key] = random_json(rng)
    elif roll < 0.7 and isinstance(container, dict):
        del container[key]
    elif roll < 0.8:
        old = container[key]
        container[key] = (
            str(old) if not isinstance(old, str) else [old] if rng.random() < 0.5 else len(old)
        )
    elif roll < 0.9:
        container[key] = nested(rng.randrange(20, 400))
    elif isinstance(container, dict):
        container[random_string(rng)] = container[key]
    else:
        container.append(container[key])
    return value


def corrupt(rng: random.Random, data: str) -> str:
    """Broken JSON (or, by chance, other JSON): truncated, spliced, or wrapped."""
    pos = rng.randrange(len(data) + 1)
    roll = rng.randrange(7)
    if roll == 0:
        return data[:pos]
    if roll == 1:
        return data[:pos] + rng.choice('{}[]",:\\x\x00 ') + data[pos:]
    if roll == 2:
        return data[:pos] + data[pos + 1 :]
    if roll == 3:
        return data + rng.choice(["}", "]", "x", "{}", " 1", "\n"])
    if roll == 4:
        return rng.choice(["NaN", "Infinity", "-Infinity", "null", "true", "1e999", '"str"'])
    if roll == 5:
        return "[" + data
    return data.replace('"', "'", 1)


# -- fuzz cases --------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    frames: list[WireFrame]
    labels: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class Target:
    """A fuzzed session. A clean one only gets input that leaves its models in place, so the
    valid moves among the fuzz must still succeed there; a dirty one gets everything."""

    token: str
    ids: DemoIds
    clean: bool


class Fuzzer:
    def __init__(self, rng: random.Random, worker: int, honest: DemoIds) -> None:
        self.rng = rng
        self.worker = worker
        self.honest = honest
        self.count = 0
        pushed = Document()
        pushed.add_root(Div(text="pushed by the fuzzer", name="pushed"))
        self.push_content = protocol.push_doc(pushed).content

    def msgid(self) -> str:
        self.count += 1
        return f"w{self.worker}-{self.count}"

    def header(self, msgtype: str, **extra: Any) -> dict[str, Any]:
        return {"msgid": self.msgid(), "msgtype": msgtype, **extra}

    def valid(self, target: Target) -> tuple[dict[str, Any], Any, frozenset[str] | None]:
        """A valid message for the target (header, content, the exact reply type if sure)."""
        rng, ids = self.rng, target.ids
        roll = rng.randrange(5)
        if roll == 0:
            return self.header(protocol.PULL_DOC_REQ), {}, frozenset({protocol.PULL_DOC_REPLY})
        if roll == 1:
            return self.header(protocol.SERVER_INFO_REQ), {}, None
        if roll == 2 and not target.clean:
            return self.header(protocol.PUSH_DOC), self.push_content, ONLY_OK
        if roll == 3:
            return self.header(protocol.PATCH_DOC), {"events": [click_event(ids)]}, ONLY_OK
        value = round(rng.uniform(0.1, 5.0), 2)
        return self.header(protocol.PATCH_DOC), {"events": [slider_event(ids, value)]}, ONLY_OK

    def case(self, target: Target) -> Case:
        names = [name for name, weight in CASE_WEIGHTS for _ in range(weight)]
        name = self.rng.choice(names)
        if name in DIRTY_ONLY and target.clean:
            name = "valid"
        case: Case = getattr(self, "case_" + name.replace("-", "_"))(target)
        if not target.clean:
            # anything may have happened to a dirty document: its models may be gone (Bokeh
            # then drops patches to them silently, with OK) or replaced; no exact expectations
            case.labels = {}
        return case

    def _message(
        self,
        name: str,
        header: dict[str, Any],
        content: Any,
        label: frozenset[str] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Case:
        labels = {header["msgid"]: label} if label else {}
        return Case(name, bokeh_frames(header, {}, content, buffers), labels)

    # each case_* builds one case; the oracle works out what the server must answer

    def case_valid(self, target: Target) -> Case:
        header, content, label = self.valid(target)
        return self._message("valid", header, content, label if target.clean else None)

    def case_fragmented(self, target: Target) -> Case:
        """A valid message whose frames are split into websocket fragments (legal)."""
        header, content, label = self.valid(target)
        frames = []
        for frame in bokeh_frames(header, {}, content):
            cut = self.rng.randrange(len(frame.payload) + 1)
            head, tail = frame.payload[:cut], frame.payload[cut:]
            frames += [WireFrame(frame.opcode, head, fin=False), WireFrame(CONTINUATION, tail)]
        labels = {header["msgid"]: label} if label and target.clean else {}
        return Case("fragmented", frames, labels)

    def case_unknown_msgtype(self, target: Target) -> Case:
        msgtype = self.rng.choice(
            ["ACK", "OK", "ERROR", "PULL-DOC-REPLY", "SERVER-INFO-REPLY", "pull-doc-req", ""]
            + [random_string(self.rng) for _ in range(3)]
        )
        return self._message("unknown-msgtype", self.header(msgtype), {}, ONLY_ERROR)

    def case_unknown_model(self, target: Target) -> Case:
        event = slider_event(target.ids, 1.5)
        event["model"] = {"id": self.rng.choice(["nope", "", "p0", random_string(self.rng)])}
        return self._patch("unknown-model", [event], ONLY_ERROR)

    def case_unknown_attribute(self, target: Target) -> Case:
        odd = ["no_such_property", "__class__", "__dict__", "id", "document", "_property_values"]
        attr = self.rng.choice([*odd, "zz_" + random_string(self.rng)])
        model = self.rng.choice(target.ids.all())
        event = {"kind": "ModelChanged", "model": {"id": model}, "attr": attr, "new": 1}
        # Bokeh ignores attributes its models lack (BokehJS may send client-only ones): it logs
        # a warning and answers OK; nothing reaches the document
        return self._patch("unknown-attribute", [event], ONLY_OK if target.clean else None)

    def case_wrong_type(self, target: Target) -> Case:
        value = self.rng.choice(["abc", [], {}, None, [1, 2], {"id": target.ids.status}, "1.5"])
        return self._patch("wrong-type", [slider_event(target.ids, value)], ONLY_ERROR)

    def case_foreign_document(self, target: Target) -> Case:
        """Events naming the models of the honest session's document."""
        honest = self.honest
        event = self.rng.choice(
            [
                slider_event(honest, 4.9),
                click_event(honest),
                {
                    "kind": "ModelChanged",
                    "model": {"id": honest.status},
                    "attr": "text",
                    "new": "hijacked",
                },
                {
                    "kind": "ColumnsStreamed",
                    "model": {"id": honest.source},
                    "attr": "data",
                    "data": {"type": "map", "entries": [["x", [1]], ["y", [2]]]},
                },
            ]
        )
        return self._patch("foreign-document", [event], ONLY_ERROR)

    def case_huge_string(self, target: Target) -> Case:
        """A string of up to 200 kB, inside the size limit: fine as text, wrong as a number."""
        chunk = "".join(self.rng.choice('ab<>&"\\é\n') for _ in range(64))
        size = self.rng.randrange(10_000, LIMIT - 1000)  # bytes, as JSON on the wire
        huge = chunk * (size // (len(dumps(chunk)) - 2))
        ids = target.ids
        if self.rng.random() < 0.5:
            event = {
                "kind": "ModelChanged",
                "model": {"id": ids.status},
                "attr": "text",
                "new": huge,
            }
            return self._patch("huge-string", [event], ONLY_OK if target.clean else None)
        if self.rng.random() < 0.5:
            return self._patch("huge-string", [slider_event(ids, huge)], ONLY_ERROR)
        return self._message("huge-string", self.header(huge), {}, ONLY_ERROR)

    def case_mutated_content(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == protocol.PUSH_DOC and target.clean:
            header["msgtype"] = protocol.PATCH_DOC
        return self._message("mutated-content", header, mutate(self.rng, content))

    def case_mutated_header(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        header = mutate(self.rng, header)
        if isinstance(header, dict) and header.get("msgtype") == protocol.PUSH_DOC:
            header["msgtype"] = protocol.PULL_DOC_REQ  # pushes only where expected
        return self._message("mutated-header", header, content)

    def case_broken_json(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == protocol.PUSH_DOC and target.clean:
            header["msgtype"] = protocol.PULL_DOC_REQ
        frames = bokeh_frames(header, {}, content)
        n = self.rng.randrange(3)
        frames[n] = text(corrupt(self.rng, frames[n].payload.decode()))
        return Case("broken-json", frames)

    def case_binary_out_of_place(self, target: Target) -> Case:
        header, content, _ = self.valid(target)
        if header["msgtype"] == protocol.PUSH_DOC:
            header["msgtype"] = protocol.PULL_DOC_REQ
        frames = bokeh_frames(header, {}, content)
        n = self.rng.randrange(len(frames) + 1)
        if n == len(frames):
            frames.append(binary(os.urandom(self.rng.randrange(0, 64))))  # a stray buffer
        else:
            frames[n] = binary(frames[n].payload)
        return Case("binary-out-of-place", frames)

    def case_num_buffers_lie(self, target: Target) -> Case:
        """A header announcing more or fewer buffers than follow, or a bad count."""
        header, content, _ = self.valid(target)
        if header["msgtype"] == protocol.PUSH_DOC:
            header["msgtype"] = protocol.PATCH_DOC
        sent = self.rng.randrange(3)
        header["num_buffers"] = self.rng.choice(
            [sent + 1, sent + 2, max(0, sent - 1), -1, 10**6, "2", 1.0, None, True]
        )
        buffers = [os.urandom(self.rng.randrange(1, 32)) for _ in range(sent)]
        return Case("num-buffers-lie", bokeh_frames(header, {}, content, buffers))

    def case_bad_buffer_header(self, target: Target) -> Case:
        header = self.header(protocol.PATCH_DOC, num_buffers=1)
        buffer_header = self.rng.choice(
            [{"id": 1}, {"id": "a", "extra": 1}, [], "a", {}, {"ID": "a"}]
        )
        frames = bokeh_frames(header, {}, {"events": []})
        frames += [text(dumps(buffer_header)), binary(b"\x00")]
        return Case("bad-buffer-header", frames)

    def case_stream_events(self, target: Target) -> Case:
        """Column streams and patches with random data, on the session's own source."""
        ids, rng = target.ids, self.rng
        data = {"type": "map", "entries": [["x", random_json(rng)], ["y", [rng.random()]]]}
        event = rng.choice(
            [
                {
                    "kind": "ColumnsStreamed",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "data": data,
                    "rollover": rng.choice([None, -1, 0, 3, 10**9, "x"]),
                },
                {
                    "kind": "ColumnsPatched",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "patches": {
                        "type": "map",
                        "entries": [
                            [
                                "y",
                                [
                                    [
                                        rng.choice(
                                            [
                                                0,
                                                -1,
                                                10**6,
                                                "a",
                                                {"type": "slice", "start": 0, "stop": 10**9},
                                            ]
                                        ),
                                        1.0,
                                    ]
                                ],
                            ]
                        ],
                    },
                },
                {
                    "kind": "ColumnDataChanged",
                    "model": {"id": ids.source},
                    "attr": "data",
                    "data": data,
                    "cols": rng.choice([None, ["x"], ["nope"], "x"]),
                },
                {
                    "kind": rng.choice(["NoSuchEvent", "", "ModelChanged"]),
                    "model": {"id": ids.slider},
                },
            ]
        )
        return self._patch("stream-events", [event])

    def case_document_events(self, target: Target) -> Case:
        """Roots and titles: legal changes to the structure of the (dirty) session's document."""
        rng = self.rng
        event = rng.choice(
            [
                {"kind": "RootAdded", "model": random_json(rng)},
                {
                    "kind": "RootAdded",
                    "model": {
                        "type": "object",
                        "name": "Div",
                        "id": f"fz{rng.randrange(10**6)}",
                        "attributes": {"text": "root"},
                    },
                },
                {"kind": "RootRemoved", "model": {"id": rng.choice(target.ids.all())}},
                {"kind": "TitleChanged", "title": random_json(rng)},
                {"kind": "TitleChanged", "title": random_string(rng)},
            ]
        )
        return self._patch("document-events", [event])

    def case_mutated_push(self, target: Target) -> Case:
        content = mutate(self.rng, self.push_content)
        return self._message("mutated-push", self.header(protocol.PUSH_DOC), content)

    def case_random_frames(self, target: Target) -> Case:
        frames = []
        for _ in range(self.rng.randrange(1, 4)):
            if self.rng.random() < 0.5:
                frames.append(text(dumps(random_json(self.rng))))
            else:
                frames.append(binary(os.urandom(self.rng.randrange(0, 100))))
        return Case("random-frames", frames)

    def case_oversized(self, target: Target) -> Case:
        """Beyond --websocket-max-message-size: one huge frame, or a message of many frames."""
        header = self.header(protocol.PATCH_DOC)
        if self.rng.random() < 0.5:
            event = {"kind": "ModelChanged", "model": {"id": target.ids.status}, "attr": "text"}
            event["new"] = "x" * (LIMIT + self.rng.randrange(1, 5000))
            return self._patch("oversized", [event])
        header["num_buffers"] = 2
        half = LIMIT // 2 + self.rng.randrange(1, 1000)
        return Case("oversized", bokeh_frames(header, {}, {"events": []}, [b"\0" * half] * 2))

    def case_invalid_utf8(self, target: Target) -> Case:
        header = self.header(protocol.PULL_DOC_REQ)
        frames = bokeh_frames(header, {}, {})
        n = self.rng.randrange(3)
        frames[n] = text(
            frames[n].payload[:-1] + self.rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"])
        )
        return Case("invalid-utf8", frames)

    def case_bad_frame(self, target: Target) -> Case:
        """Frames that break RFC 6455 itself: the websocket layer must close with 1002."""
        payload = b'{"msgid":"x","msgtype":"PULL-DOC-REQ"}'
        frame = self.rng.choice(
            [
                WireFrame(TEXT, payload, rsv=4, violation=1002),  # RSV1 without an extension
                WireFrame(TEXT, payload, rsv=2, violation=1002),
                WireFrame(0x3, payload, violation=1002),  # a reserved data opcode
                WireFrame(0xB, b"", violation=1002),  # a reserved control opcode
                WireFrame(TEXT, payload, masked=False, violation=1002),  # clients must mask
                WireFrame(CONTINUATION, payload, violation=1002),  # continues nothing
                WireFrame(PING, b"x" * 126, violation=1002),  # control frames are <= 125 bytes
                WireFrame(PING, b"x", fin=False, violation=1002),  # and never fragmented
                WireFrame(CLOSE, (999).to_bytes(2, "big"), violation=1002),  # an invalid code
                WireFrame(CLOSE, b"\x03", violation=1002),  # a one-byte close payload
            ]
        )
        return Case("bad-frame", [frame])

    def case_deeply_nested(self, target: Target) -> Case:
        """JSON nested thousands deep (depths between ~500 and ~1000 are avoided: there the
        interpreter's recursion limit depends on the stack depth of the caller)."""
        header = self.header(protocol.PULL_DOC_REQ)
        frames = bokeh_frames(header, {}, {})
        depth = self.rng.randrange(5_000, 100_000)
        frames[self.rng.randrange(3)] = text(self.rng.choice(["[", '{"a":']) * depth)
        return Case("deeply-nested", frames)

    def _patch(self, name: str, events: list[Any], label: frozenset[str] | None = None) -> Case:
        return self._message(name, self.header(protocol.PATCH_DOC), {"events": events}, label)


CASE_WEIGHTS = [
    ("valid", 12),
    ("fragmented", 2),
    ("unknown-msgtype", 4),
    ("unknown-model", 4),
    ("unknown-attribute", 4),
    ("wrong-type", 4),
    ("foreign-document", 5),
    ("huge-string", 2),
    ("mutated-content", 14),
    ("mutated-header", 4),
    ("broken-json", 3),
    ("binary-out-of-place", 2),
    ("num-buffers-lie", 2),
    ("bad-buffer-header", 1),
    ("stream-events", 5),
    ("document-events", 3),
    ("mutated-push", 3),
    ("random-frames", 2),
    ("oversized", 1),
    ("invalid-utf8", 1),
    ("bad-frame", 1),
    ("deeply-nested", 1),
]
DIRTY_ONLY = {"document-events", "mutated-push"}


# -- running connections -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened on one fuzz connection."""

    worker: int
    index: int
    cases: list[str]
    messages: int  # complete messages the server saw
    replies: Counter[str]
    closed: Closed
    expected_close: int | None
    predicted: Prediction
    lost_replies: int  # replies the server dropped when it closed after a violation
    problems: list[str]


class ReplyChecker:
    """Matches the server's replies against the oracle's list, in order."""

    def __init__(self, expected: list[tuple[str, frozenset[str]]], problems: list[str]) -> None:
        self.expected = list(expected)
        self.problems = problems
        self.replies: Counter[str] = Counter()

    def check(self, reply: Message, *, may_skip: bool) -> None:
        self.replies[reply.msgtype] += 1
        if reply.msgtype == protocol.ERROR:
            error = reply.content
            if error.get("traceback") is not None or "Traceback" in str(error.get("text")):
                self.problems.append(f"an ERROR reply carried a traceback: {error}")
        while self.expected and self.expected[0][0] != reply.reqid:
            if not may_skip:
                self.problems.append(f"no reply to message {self.expected[0][0]}")
            self.expected.pop(0)
        if not self.expected:
            self.problems.append(f"an unexpected reply {reply.msgtype} to {reply.reqid!r}")
            return
        msgid, allowed = self.expected.pop(0)
        if reply.msgtype not in allowed:
            text = reply.content.get("text") if reply.msgtype == protocol.ERROR else ""
            self.problems.append(f"{msgid} got {reply.msgtype} {text!r}, not {sorted(allowed)}")


async def replies_until(
    socket_: RawWebSocket, checker: ReplyChecker, sentinel: str | None
) -> Closed | None:
    """Check replies until the one to ``sentinel`` (then None) or until the server closes."""
    while True:
        result = await socket_.receive(timeout=30)
        if isinstance(result, Closed):
            return result
        if result.reqid is None:
            continue  # a change broadcast by the session (its callbacks ran)
        checker.check(result, may_skip=sentinel is None)
        if result.reqid == sentinel:
            return None


async def fuzz_connection(
    server: RunningServer, target: Target, cases: list[Case], worker: int, index: int
) -> Outcome:
    """Send the cases that keep the connection open, then a sentinel request, and check every
    reply up to the sentinel's; then send the case that breaks the protocol (if the last one
    does) and check the close. One oracle run over all frames predicts both phases."""
    sentinel = protocol.make_message(protocol.SERVER_INFO_REQ)
    labels = {msgid: label for case in cases for msgid, label in case.labels.items()}
    head = [frame for case in cases for frame in case.frames]
    tail: list[WireFrame] = []
    if predict(head, labels).close is not None:
        head = [frame for case in cases[:-1] for frame in case.frames]
        tail = cases[-1].frames
    head += message_frames(sentinel)
    first = predict(head, labels)
    if first.close is not None:  # a message left incomplete: the sentinel itself breaks it
        head, tail = [], head
    predicted = predict(head + tail, labels)
    problems: list[str] = []
    checker = ReplyChecker(predicted.replies, problems)
    socket_ = await open_raw(server, target.token)
    closed: Closed | None = None
    try:
        if head:
            await socket_.send_frames(head)
            closed = await replies_until(socket_, checker, sentinel.msgid)
            if closed is not None:
                problems.append(f"the server closed the connection early: {closed.describe()}")
        if closed is None and tail:
            await socket_.send_frames(tail)
            closed = await replies_until(socket_, checker, None)
            if closed is None:
                problems.append("the connection stayed open")
        if closed is None:
            closed = await socket_.close(1000)
    except TimeoutError as exc:
        problems.append(f"the server went silent: {exc}")
        socket_.abort()
        closed = Closed(None, "timeout", clean=False)
    websocket_failure = predicted.close is not None and not predicted.by_receiver
    if not closed.clean:
        # failing the connection, uvicorn closes the socket at once; with bytes of ours still
        # unread there, the kernel resets the connection and the close frame may be lost
        if not (websocket_failure or predicted.racing) or closed.reason == "timeout":
            problems.append(f"the connection ended without a close frame ({closed.reason})")
    elif closed.code not in VALID_CLOSE_CODES:
        problems.append(f"invalid close code {closed.code}")
    elif predicted.close is None and closed.code != 1000:
        problems.append(f"the server closed with {closed.describe()}; it had no reason to")
    elif predicted.close is not None and closed.code not in predicted.codes:
        problems.append(f"expected close {sorted(predicted.codes)}, got {closed.describe()}")
    return Outcome(
        worker=worker,
        index=index,
        cases=[case.name for case in cases],
        messages=len(predicted.replies),
        replies=checker.replies,
        closed=closed,
        expected_close=predicted.close,
        predicted=predicted,
        lost_replies=len(checker.expected),
        problems=problems,
    )


async def fuzz_worker(
    server: RunningServer, worker: int, targets: list[Target], honest: DemoIds
) -> list[Outcome]:
    rng = random.Random(SEED * 1000 + worker)
    fuzzer = Fuzzer(rng, worker, honest)
    outcomes = []
    for index in range(CONNECTIONS_PER_WORKER):
        target = rng.choice(targets)
        cases: list[Case] = []
        for _ in range(rng.randrange(1, MAX_CASES_PER_CONNECTION)):
            cases.append(fuzzer.case(target))
            frames = [frame for case in cases for frame in case.frames]
            if predict(frames, {}).close is not None:
                break  # the server hangs up here: reconnect for the next cases
        outcomes.append(await fuzz_connection(server, target, cases, worker, index))
    return outcomes


@dataclass
class HonestLog:
    rounds: int = 0
    problems: list[str] = field(default_factory=list)


async def honest_session(
    socket_: BokehSocket, ids: DemoIds, stop: asyncio.Event, log: HonestLog
) -> None:
    """Move the slider until the fuzzers stop; every move must come back exactly as expected."""
    for k in range(1000):
        if stop.is_set() and k >= 20:
            return
        value = round(0.5 + (k % 40) * 0.1, 1)
        patch = protocol.make_message(protocol.PATCH_DOC, {"events": [slider_event(ids, value)]})
        await socket_.send(patch)
        seen: list[dict[str, Any]] = []
        while True:
            message = await asyncio.wait_for(socket_.receive(), 30)
            if message.reqid == patch.msgid:
                break
            if message.msgtype != protocol.PATCH_DOC:
                log.problems.append(f"round {k}: unexpected {message.msgtype} {message.content}")
            seen += message.content.get("events", [])
        if message.msgtype != protocol.OK:
            log.problems.append(f"round {k}: {message.msgtype} {message.content}")
        touched = {event.get("model", {}).get("id") for event in seen}
        if not touched <= {ids.status, ids.source}:
            log.problems.append(f"round {k}: changes to other models reached us: {seen}")
        texts = [e.get("new") for e in seen if e.get("attr") == "text"]
        if texts != [f"frequency = {value}, resets: 0"]:
            log.problems.append(f"round {k}: status texts {texts} after moving to {value}")
        log.rounds = k + 1
        await asyncio.sleep(0.02)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) / 1024


async def sample_rss(pid: int, samples: list[float], stop: asyncio.Event) -> None:
    for _ in range(100_000):
        samples.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
            return
        except TimeoutError:
            pass


async def pull_ids(socket_: BokehSocket | RawWebSocket) -> DemoIds:
    if isinstance(socket_, BokehSocket):
        reply = await socket_.request(protocol.PULL_DOC_REQ)
    else:
        reply = await socket_.request(protocol.make_message(protocol.PULL_DOC_REQ))
    assert reply.msgtype == protocol.PULL_DOC_REPLY
    return DemoIds.of(reply.content["doc"])


def ws_url(server: RunningServer, app: str = "/demo") -> str:
    return server.url.replace("http://", "ws://") + app + "/ws"


@pytest.fixture(scope="module")
def fuzzed_server() -> Any:
    args = ["--websocket-max-message-size", str(LIMIT), "--log-level", "info"]
    with run_app_server(EXAMPLES / "demo.py", args=args) as server:
        yield server


async def test_the_server_survives_thousands_of_hostile_messages(
    fuzzed_server: RunningServer,
) -> None:
    server = fuzzed_server
    note = seed_note()
    honest_token = fetch_token(server.url + "/demo")
    honest = await BokehSocket.open(ws_url(server), honest_token)
    assert (await honest.receive()).msgtype == protocol.ACK
    honest_ids = await pull_ids(honest)

    # two sessions per worker: one clean, one dirty; each connection picks one
    targets: list[list[Target]] = []
    tokens = [honest_token]
    for _ in range(WORKERS):
        mine = []
        for clean in (True, False):
            token = fetch_token(server.url + "/demo")
            tokens.append(token)
            socket_ = await open_raw(server, token)
            mine.append(Target(token, await pull_ids(socket_), clean))
            await socket_.close()
        targets.append(mine)
    session_ids = {get_session_id(token) for token in tokens}

    pid = server.process.pid
    log_start = len(server.log())
    baseline = rss_mb(pid)
    samples: list[float] = []
    stop = asyncio.Event()
    honest_log = HonestLog()
    sampler = asyncio.create_task(sample_rss(pid, samples, stop))
    honest_task = asyncio.create_task(honest_session(honest, honest_ids, stop, honest_log))
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(fuzz_worker(server, w, targets[w], honest_ids) for w in range(WORKERS))
            ),
            timeout=400,
        )
    finally:
        stop.set()
    await asyncio.wait_for(honest_task, 120)
    await sampler
    elapsed = time.monotonic() - started
    outcomes = [outcome for worker in results for outcome in worker]

    # the record: every connection's fate
    cases = Counter(name for o in outcomes for name in o.cases)
    closes = Counter(o.closed.describe().split(" '")[0] for o in outcomes)
    replies = sum((o.replies for o in outcomes), Counter())
    total_messages = sum(o.messages for o in outcomes)
    lost = sum(o.lost_replies for o in outcomes)
    print(f"\nfuzz seed {SEED}: {len(outcomes)} connections, {sum(cases.values())} cases, ")
    print(
        f"{total_messages} complete messages in {elapsed:.1f}s; honest rounds {honest_log.rounds}"
    )
    print(f"cases: {dict(sorted(cases.items()))}")
    print(f"closes: {dict(sorted(closes.items()))}")
    print(f"replies: {dict(sorted(replies.items()))}; replies lost at a close: {lost}")
    print(f"server RSS: {baseline:.0f} MB before, peak {max(samples):.0f} MB")

    problems = [
        f"worker {o.worker} connection {o.index} {o.cases}: {p}"
        for o in outcomes
        for p in o.problems
    ]
    print("\n".join(problems[:50]))
    assert not problems, f"{note} {len(problems)} problems, first ones:\n" + "\n".join(
        problems[:15]
    )
    assert not honest_log.problems, (
        f"{note} the honest session was disturbed: {honest_log.problems[:5]}"
    )
    assert honest_log.rounds >= 20, note

    # the fuzzer did what it claims: thousands of messages, every kind of case and close
    assert total_messages >= 2000, f"{note} only {total_messages} messages"
    assert set(cases) == {name for name, _ in CASE_WEIGHTS}, note
    seen_codes = {o.closed.code for o in outcomes}
    assert {1000, 1002, 1003, 1007, 1009} <= seen_codes, f"{note} close codes {seen_codes}"
    assert replies[protocol.ERROR] > 300 and replies[protocol.OK] > 300, f"{note} {replies}"

    # memory stayed bounded
    peak = max(samples)
    assert peak - baseline < RSS_GROWTH_BOUND_MB, (
        f"{note} server RSS grew from {baseline:.0f} MB to {peak:.0f} MB "
        f"(bound: +{RSS_GROWTH_BOUND_MB} MB)"
    )

    # the server still answers pages, health checks and new sessions; the honest one is intact
    page = urllib.request.urlopen(server.url + "/demo", timeout=10)
    assert page.status == 200
    assert urllib.request.urlopen(server.url + "/healthz", timeout=10).read() == b"ok"
    fresh = await BokehSocket.open(ws_url(server), fetch_token(server.url + "/demo"))
    async with fresh:
        assert (await fresh.receive()).msgtype == protocol.ACK
        fresh_ids = await pull_ids(fresh)
        reply = await fresh.request(protocol.PATCH_DOC, {"events": [slider_event(fresh_ids, 2.0)]})
        assert reply.msgtype == protocol.OK, f"{note} a fresh session fails: {reply.content}"
    async with honest:
        doc = (await honest.request(protocol.PULL_DOC_REQ)).content["doc"]
        assert doc["title"] == "app_server demo"
        assert "hijacked" not in json.dumps(doc), f"{note} a foreign patch reached the document"

    # every protocol error the server logged names the session it happened in
    log = server.log()[log_start:]
    assert "Exception in ASGI application" not in log, f"{note} an exception escaped app_server"
    pattern = re.compile(
        r"session (\S+): (closing the websocket|unexpected message type|handling \S+ failed)"
    )
    logged = pattern.findall(log)
    assert logged, note
    unknown = {sid for sid, _ in logged} - session_ids
    assert not unknown, f"{note} protocol errors logged for unknown sessions {unknown}"
    closes_logged = sum(1 for _, what in logged if what == "closing the websocket")
    by_receiver = [o for o in outcomes if o.predicted.by_receiver]
    seen_reason = [o for o in by_receiver if o.closed.reason == o.predicted.reason[:120]]
    assert len(seen_reason) <= closes_logged <= len(by_receiver), (
        f"{note} {len(by_receiver)} connections broke the Bokeh protocol ({len(seen_reason)} saw "
        f"the Receiver's reason); {closes_logged} closes were logged with a reason"
    )


# -- what the fuzzer found, pinned down ----------------------------------------------------------


def session_log_lines(server: RunningServer, session_id: str, since: int) -> list[str]:
    return [line for line in server.log()[since:].splitlines() if session_id in line]


async def test_deeply_nested_json_closes_with_an_error_code_and_a_logged_reason(
    fuzzed_server: RunningServer,
) -> None:
    """Found by this fuzzer: the receiver's json.loads raised RecursionError, which escaped the
    reader loop; the websocket closed with 1000 and uvicorn logged an unhandled exception."""
    token = fetch_token(fuzzed_server.url + "/demo")
    since = len(fuzzed_server.log())
    socket_ = await open_raw(fuzzed_server, token)
    await socket_.send_frames([text("[" * 100_000)])  # 100 kB: well inside the size limit
    closed = await socket_.receive()
    assert isinstance(closed, Closed) and closed.clean
    assert closed.code in (1002, 1007, 1009), closed.describe()
    await asyncio.sleep(0.2)
    assert "Exception in ASGI application" not in fuzzed_server.log()[since:]
    lines = session_log_lines(fuzzed_server, get_session_id(token), since)
    assert any("closing the websocket" in line for line in lines), lines


async def test_replies_queued_before_a_violation_reach_the_client(
    fuzzed_server: RunningServer,
) -> None:
    socket_ = await open_raw(fuzzed_server, fetch_token(fuzzed_server.url + "/demo"))
    pulls = [protocol.make_message(protocol.PULL_DOC_REQ) for _ in range(60)]
    await socket_.send_frames([f for m in pulls for f in message_frames(m)] + [binary(b"?")])
    replies = []
    for _ in range(100):
        result = await socket_.receive()
        if isinstance(result, Closed):
            break
        replies.append(result.reqid)
    assert isinstance(result, Closed) and result.code == 1003, result
    assert replies == [m.msgid for m in pulls], f"{len(replies)} of 60 replies arrived"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(text("x" * (LIMIT + 1)), 1009, id="oversized"),
        pytest.param(WireFrame(TEXT, b"{}", rsv=4), 1002, id="reserved-bit"),
    ],
)
async def test_websocket_level_closes_are_logged_with_the_session_and_the_code(
    fuzzed_server: RunningServer, frame: WireFrame, code: int
) -> None:
    token = fetch_token(fuzzed_server.url + "/demo")
    since = len(fuzzed_server.log())
    socket_ = await open_raw(fuzzed_server, token)
    await socket_.send_frames([frame])
    closed = await socket_.receive()
    assert isinstance(closed, Closed) and closed.code == code, closed
    await asyncio.sleep(0.3)
    lines = session_log_lines(fuzzed_server, get_session_id(token), since)
    assert any(str(code) in line for line in lines), lines

"""Hostile load on a live server: a client that never reads, and 500 sessions at once.

Both run ``app-server serve tests/apps/security_stream.py`` in a subprocess and speak the Bokeh
protocol over real websockets (the raw client of fuzz/rawws.py). Nothing here asserts a
speed: waits are bounded only to turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id, get_session_id

from app_server import protocol
from fuzz.framing import BokehMessage
from fuzz.rawws import Closed, RawWebSocket, find_model, message_frames, open_raw
from tests.conftest import TEST_APPS
from tests.servers import RunningServer, rss_mb, run_app_server
from tests.wsclient import fetch_token

APP = TEST_APPS / "security_stream.py"
QUEUE_SIZE = 32  # --outbound-queue-size: small, so a slow reader is found out soon
ROWS = 1000  # rows per 10 ms tick: ~90 kB per message, so TCP buffers fill in a second or two
SLOW_RSS_BOUND_MB = 40  # server RSS growth allowed while a client does not read
SESSIONS = 500
HANDSHAKES_AT_ONCE = 50


def metric(server: RunningServer, name: str) -> float:
    """One unlabelled (or first labelled) sample from /metrics."""
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match, f"no {name} in /metrics"
    return float(match.group(1))


def streamed_seqs(message: BokehMessage) -> list[int]:
    """The sequence numbers a PATCH-DOC streamed into the app's source."""
    seqs: list[int] = []
    for event in message.content.get("events", []):
        if event.get("kind") == "ColumnsStreamed":
            data = event["data"]
            columns = dict(data["entries"]) if data.get("type") == "map" else data
            seqs += columns["seq"]
    return seqs


# -- a client that never reads -------------------------------------------------------------------


@dataclass
class SlowReaderRun:
    """What happened while one client of a streaming session stopped reading."""

    session_id: str
    baseline_mb: float
    peak_mb: float
    dropped_after_s: float
    open_after_drop: float  # app_server_websockets_open 2 s after the drop, the slow one unread
    honest_seqs: list[int]
    honest_after_drop: int  # stream messages the honest client got after the drop
    honest_end: str  # how the honest client's reading ended
    slow_closed: Closed
    slow_messages: int  # messages the slow client found in its buffers once it read
    log: str
    samples: list[float] = field(default_factory=list)


async def honest_reader(
    socket_: RawWebSocket, seqs: list[int], counts: list[float], stop: asyncio.Event
) -> str:
    """Read the stream until told to stop; record every sequence number and arrival time."""
    for _ in range(1_000_000):
        if stop.is_set():
            return "stopped"
        try:
            result = await socket_.receive(timeout=1)
        except TimeoutError:
            continue
        if isinstance(result, Closed):
            return f"the server closed the honest client: {result.describe()}"
        seqs += streamed_seqs(result)
        counts.append(time.monotonic())
    return "read enough"


async def run_slow_reader(server: RunningServer) -> SlowReaderRun:
    token = fetch_token(f"{server.url}/security_stream?rows={ROWS}")
    honest = await open_raw(server, token, app="/security_stream")
    reply = await honest.request(protocol.make_message(protocol.PULL_DOC_REQ))
    assert reply.msgtype == protocol.PULL_DOC_REPLY
    seqs: list[int] = []
    arrivals: list[float] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(honest_reader(honest, seqs, arrivals, stop))

    pid = server.process.pid
    await asyncio.sleep(0.5)  # the stream and the honest client are in their stride
    baseline = rss_mb(pid)
    samples = [baseline]
    # a receive window of a few kB: the server's sends back up as soon as its buffers fill
    slow = await RawWebSocket.connect(
        server.port, "/security_stream/ws", ["bokeh", token], rcvbuf=4096
    )
    await slow.send_frames(message_frames(protocol.make_message(protocol.PULL_DOC_REQ)))
    started = time.monotonic()
    for _ in range(600):  # at most a minute
        await asyncio.sleep(0.1)
        samples.append(rss_mb(pid))
        if metric(server, "app_server_slow_clients_dropped_total") >= 1:
            break
    dropped_at = time.monotonic()
    for _ in range(20):  # two more seconds, the slow client still not reading
        await asyncio.sleep(0.1)
        samples.append(rss_mb(pid))
    open_after_drop = metric(server, "app_server_websockets_open")
    stop.set()
    honest_end = await asyncio.wait_for(reader, 30)
    await honest.close()

    slow_messages = 0
    closed: Closed | None = None
    for _ in range(100_000):  # now read what the buffers hold, up to the close
        result = await slow.receive(timeout=30)
        if isinstance(result, Closed):
            closed = result
            break
        slow_messages += 1
    assert closed is not None
    return SlowReaderRun(
        session_id=get_session_id(token),
        baseline_mb=baseline,
        peak_mb=max(samples),
        dropped_after_s=dropped_at - started,
        open_after_drop=open_after_drop,
        honest_seqs=seqs,
        honest_after_drop=sum(1 for t in arrivals if t > dropped_at),
        honest_end=honest_end,
        slow_closed=closed,
        slow_messages=slow_messages,
        log=server.log(),
        samples=samples,
    )


@pytest.fixture(scope="module")
def slow_reader() -> Iterator[SlowReaderRun]:
    args = ["--outbound-queue-size", str(QUEUE_SIZE), "--log-level", "info"]
    with run_app_server(APP, args=args) as server:
        run = asyncio.run(run_slow_reader(server))
    print(
        f"\nslow reader: dropped after {run.dropped_after_s:.1f}s, RSS {run.baseline_mb:.0f} MB "
        f"-> peak {run.peak_mb:.0f} MB; it then read {run.slow_messages} buffered messages and "
        f"{run.slow_closed.describe()}; the honest client got {run.honest_after_drop} messages "
        f"after the drop ({len(run.honest_seqs)} rows in all)"
    )
    yield run


def test_a_client_that_never_reads_is_dropped_and_memory_stays_bounded(
    slow_reader: SlowReaderRun,
) -> None:
    run = slow_reader
    assert run.dropped_after_s < 60, "the slow client was never dropped"
    assert run.peak_mb - run.baseline_mb < SLOW_RSS_BOUND_MB, (
        f"server RSS grew from {run.baseline_mb:.0f} to {run.peak_mb:.0f} MB while a client "
        f"did not read (bound: +{SLOW_RSS_BOUND_MB} MB)"
    )
    behind = rf"session {run.session_id}: client is {QUEUE_SIZE} messages \(\d+ bytes\) behind; "
    assert re.search(behind + "disconnecting it", run.log)
    # once it reads at last, it finds what TCP buffered, then the close: 1008 with a reason
    assert run.slow_closed.clean and run.slow_closed.code == 1008, run.slow_closed
    assert "too slow" in run.slow_closed.reason


def test_the_other_client_of_the_session_keeps_receiving_every_row(
    slow_reader: SlowReaderRun,
) -> None:
    run = slow_reader
    assert run.honest_end == "stopped", run.honest_end
    assert run.honest_after_drop >= 20, "the honest client stalled after the slow one was dropped"
    seqs = run.honest_seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the honest client missed rows"


def test_a_dropped_slow_reader_releases_its_connection_without_reading(
    slow_reader: SlowReaderRun,
) -> None:
    assert slow_reader.open_after_drop == 1, (
        f"{slow_reader.open_after_drop:.0f} websockets open 2 s after the drop: "
        "the honest one and the dropped one"
    )


# -- 500 sessions at once ------------------------------------------------------------------------


@dataclass
class Client:
    index: int
    token: str
    socket: RawWebSocket | None = None
    echo: str = ""
    replies: list[str] = field(default_factory=list)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.skip(f"cannot open {needed} files (limit {soft})")


async def echo_round_trip(client: Client, text: str) -> None:
    """Write ``echo``; the app's Python callback answers in ``reply``: both must come back."""
    assert client.socket is not None
    event = {"kind": "ModelChanged", "model": {"id": client.echo}, "attr": "text", "new": text}
    patch = protocol.make_message(protocol.PATCH_DOC, {"events": [event]})
    await client.socket.send_message(patch)
    while True:
        message = await client.socket.receive_message(timeout=60)
        if message.reqid == patch.msgid:
            assert message.msgtype == protocol.OK, (client.index, message.content)
            return
        for change in message.content.get("events", []):
            if change.get("attr") == "text":
                client.replies.append(change["new"])


async def hold_and_talk(client: Client, everyone_connected: asyncio.Event) -> None:
    assert client.socket is not None
    await asyncio.wait_for(everyone_connected.wait(), 180)
    await echo_round_trip(client, f"client {client.index}")
    for _ in range(2):  # held open a few seconds, a message now and then
        await asyncio.sleep(1)
        info = await client.socket.request(protocol.make_message(protocol.SERVER_INFO_REQ), 60)
        assert info.msgtype == protocol.SERVER_INFO_REPLY
    doc = (await client.socket.request(protocol.make_message(protocol.PULL_DOC_REQ), 60)).content
    text = json.dumps(doc)
    assert f'"text": "client {client.index}"' in text, "the session lost its own state"
    assert f'"text": "echo: client {client.index}"' in text


async def run_many_sessions(server: RunningServer) -> dict[str, Any]:
    # tokens as bokeh.client makes them: the session is created when its websocket connects,
    # and the websocket's query (period=0: no streaming) stands in for a page request
    tokens = [generate_jwt_token(generate_session_id()) for _ in range(SESSIONS)]
    clients = [Client(n, token) for n, token in enumerate(tokens)]
    handshakes = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    path = "/security_stream/ws?period=0"

    async def connect(client: Client) -> None:
        async with handshakes:
            client.socket = await RawWebSocket.connect(server.port, path, ["bokeh", client.token])
            first = await client.socket.receive_message(timeout=60)
            assert first.msgtype == protocol.ACK
        reply = await client.socket.request(protocol.make_message(protocol.PULL_DOC_REQ), 60)
        assert reply.msgtype == protocol.PULL_DOC_REPLY
        client.echo = find_model(reply.content["doc"], name="echo")

    everyone = asyncio.Event()
    pid = server.process.pid
    baseline = rss_mb(pid)
    await asyncio.wait_for(asyncio.gather(*(connect(c) for c in clients)), 300)
    connected = {
        "websockets": metric(server, "app_server_websockets_open"),
        "sessions": metric(server, "app_server_sessions_open"),
    }
    everyone.set()
    await asyncio.wait_for(asyncio.gather(*(hold_and_talk(c, everyone) for c in clients)), 300)
    peak = rss_mb(pid)
    closes = await asyncio.gather(*(c.socket.close() for c in clients if c.socket))
    return {
        "clients": clients,
        "connected": connected,
        "closes": closes,
        "rss": (baseline, peak),
    }


def test_500_concurrent_sessions_each_get_every_reply() -> None:
    raise_fd_limit(4 * SESSIONS)
    with run_app_server(APP, args=["--log-level", "warning"]) as server:
        started = time.monotonic()
        result = asyncio.run(run_many_sessions(server))
        elapsed = time.monotonic() - started
        log = server.log()
        # a graceful stop would discard 500 sessions, each with a scan of the whole heap
        # (Bokeh's DocumentModuleManager.destroy calls gc.get_referrers): ~20 s on this machine
        # (see SECURITY.md, known issues); this test is about the sessions, so end it at once
        server.process.kill()
    clients: list[Client] = result["clients"]
    baseline, peak = result["rss"]
    print(
        f"\n{SESSIONS} sessions: {elapsed:.1f}s, server RSS {baseline:.0f} MB -> {peak:.0f} MB "
        f"({(peak - baseline) * 1024 / SESSIONS:.0f} kB per session)"
    )
    assert result["connected"] == {"websockets": SESSIONS, "sessions": SESSIONS}
    for client in clients:
        assert client.replies == [f"echo: client {client.index}"], (client.index, client.replies)
    assert all(c.clean and c.code == 1000 for c in result["closes"]), {
        c.describe() for c in result["closes"]
    }
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]

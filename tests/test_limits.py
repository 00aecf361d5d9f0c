"""Every resource a client can make the server hold is bounded in bytes.

Each test is an attack with a real client against ``app-server serve``: it measures the
server's RSS while the attack runs, and the event loop's lag as another client sees it (the
slowest ``/healthz`` answer meanwhile), and prints both (``pytest -s``; SECURITY.md quotes
them). The assertions are on what the server answers and what it holds, never on time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from app_server import protocol
from fuzz.rawws import Closed, HandshakeRefused, RawWebSocket, fetch_token, message_frames
from tests.servers import RunningServer, rss_mb, run_app_server

APPS = Path(__file__).parent / "apps"
BIG_DOC = APPS / "big_doc.py"


class Watch:
    """While open: the server's peak RSS, and the slowest /healthz answer another client got."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.baseline_mb = self.peak_mb = rss_mb(server.pid)
        self.worst_lag_ms = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.probe()
        self.probe()  # once more, for an attack over before the first probe

    def probe(self) -> None:
        self.peak_mb = max(self.peak_mb, rss_mb(self.server.pid))
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
        except OSError:
            return
        finally:
            connection.close()
        self.worst_lag_ms = max(self.worst_lag_ms, (time.monotonic() - started) * 1000)

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb

    def report(self, what: str) -> str:
        lag = f"slowest /healthz {self.worst_lag_ms:.0f} ms"
        text = f"{what}: server RSS {self.growth_mb:+.1f} MB, {lag}"
        print(f"\n{text}")
        return text


@contextlib.contextmanager
def watching(server: RunningServer) -> Iterator[Watch]:
    watch = Watch(server)
    watch._thread.start()
    try:
        yield watch
    finally:
        watch._stop.set()
        watch._thread.join(30)


def sockets_held(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def raw_http(port: int, head: bytes, body_chunks: Iterable[bytes] = ()) -> tuple[int, bytes]:
    """Send a request head (and body chunks while the server takes them); the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and hung up before the rest: what a bound should do
        response = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                response += chunk
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, response


def in_chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


def pull_frames() -> list:
    return message_frames(protocol.make_message(protocol.PULL_DOC_REQ))


@pytest.fixture(scope="module")
def big_doc_server() -> Iterator[RunningServer]:
    args = ["--outbound-queue-bytes", str(4 * 1024 * 1024), "--log-level", "info"]
    with run_app_server(BIG_DOC, args=args) as server:
        yield server


async def test_a_client_that_asks_for_replies_and_never_reads_them_holds_one(
    big_doc_server: RunningServer,
) -> None:
    """A thousand PULL-DOC-REQ for a 2 MB document, never read (it held ~2 GB before)."""
    server = big_doc_server
    token = fetch_token(f"{server.url}/big_doc")
    greedy = await RawWebSocket.connect(server.port, "/big_doc/ws", ["bokeh", token], rcvbuf=4096)
    assert (await greedy.receive_message()).msgtype == protocol.ACK
    with watching(server) as watch:
        frames = [frame for _ in range(1000) for frame in pull_frames()]
        with contextlib.suppress(TimeoutError):  # the server stops reading: so do our sends
            await asyncio.wait_for(greedy.send_frames(frames), 8)
        await asyncio.sleep(1)
        other = await RawWebSocket.connect(
            server.port, "/big_doc/ws", ["bokeh", fetch_token(f"{server.url}/big_doc")]
        )
        assert (await other.receive_message()).msgtype == protocol.ACK
        reply = await other.request(protocol.make_message(protocol.PULL_DOC_REQ), timeout=30)
        assert reply.msgtype == protocol.PULL_DOC_REPLY, "another client is served meanwhile"
        await other.close()
    watch.report("1,000 unread PULL-DOC-REQ for a 2 MB document")
    greedy.abort()
    assert watch.growth_mb < 64, "replies were built faster than the client took them"


async def test_a_client_that_never_reads_pushes_is_dropped_at_the_byte_bound_and_released(
    big_doc_server: RunningServer,
) -> None:
    """256 KB every 100 ms to a client that never reads: dropped past 4 MB, socket freed."""
    server = big_doc_server
    token = fetch_token(f"{server.url}/big_doc?mb=0&push_kb=256")
    baseline_sockets = sockets_held(server.pid)
    slow = await RawWebSocket.connect(server.port, "/big_doc/ws", ["bokeh", token], rcvbuf=4096)
    assert (await slow.receive_message()).msgtype == protocol.ACK
    await slow.send_frames(pull_frames())  # synced: the pushes come now, and are never read
    with watching(server) as watch:
        dropped = server.wait_for_log("behind; disconnecting it", timeout=30)
        assert dropped, "the client that never reads was not dropped"
        # its transport is aborted once it has not answered the close for 5 s
        deadline = time.monotonic() + 20
        while sockets_held(server.pid) > baseline_sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        held = sockets_held(server.pid)
    watch.report("a client that never reads 2.5 MB/s of pushes")
    slow.abort()
    assert held <= baseline_sockets, "the dropped client's socket is still held"
    assert watch.growth_mb < 64


async def test_a_request_head_over_the_limit_is_refused_with_431_as_it_arrives() -> None:
    with run_app_server(BIG_DOC, args=["--max-header-size", "65536"]) as server:
        with watching(server) as watch:
            head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
            status, response = raw_http(server.port, head, in_chunks(32 * 1024 * 1024))
        watch.report("a 32 MB request header")
        assert status == 431, response[:200]
        assert b"over 65536 bytes" in response
        assert watch.growth_mb < 32
        assert "answered 431" in server.log()

        cookie = "c=" + "y" * 50_000  # under the limit: as Bokeh, a long cookie is fine
        status, _ = raw_http(
            server.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode()
        )
        assert status == 200


async def test_a_websocket_takes_a_cookie_or_token_header_as_long_as_bokeh_does() -> None:
    with run_app_server(BIG_DOC) as server:
        token = fetch_token(f"{server.url}/big_doc?mb=0")
        socket_ = await RawWebSocket.connect(
            server.port,
            "/big_doc/ws",
            ["bokeh", token],
            headers=["Cookie: c=" + "y" * 40_000],  # websockets alone stops at 8 KB
        )
        assert (await socket_.receive_message()).msgtype == protocol.ACK
        await socket_.close()


def packed_bomb() -> str:
    bomb = base64.urlsafe_b64encode(zlib.compress(b" " * 30_000_000, 9)).decode()
    claims = {"session_id": "s", "session_expiry": 2**40, "__bk__zlib_": bomb.rstrip("=")}
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")


async def test_a_token_carrying_a_zlib_bomb_is_refused_after_one_megabyte() -> None:
    with run_app_server(BIG_DOC) as server:
        token = packed_bomb()
        with watching(server) as watch:
            for _ in range(5):
                with pytest.raises(HandshakeRefused) as refused:
                    await RawWebSocket.connect(server.port, "/big_doc/ws", ["bokeh", token])
                assert refused.value.status == 403
                assert "over 1048576 bytes" in refused.value.body
        watch.report(f"5 tokens of {len(token) // 1024} KB, each a 30 MB zlib bomb")
        assert watch.growth_mb < 32


LOGIN_ARGS = ["--auth-module", str(APPS / "auth_module.py"), "--enable-xsrf-cookies"]
LOGIN_ARGS += ["--cookie-secret", "test-cookie-secret", "--log-level", "info"]


def post_head(length: int | None, cookie: str | None = None, path: str = "/login") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines.append("Content-Type: application/x-www-form-urlencoded")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for chunk in in_chunks(total, size):
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


async def test_login_bodies_are_judged_before_they_are_read_and_capped() -> None:
    with run_app_server(BIG_DOC, args=LOGIN_ARGS) as server:
        port = server.port
        with watching(server) as watch:
            # no XSRF cookie: refused before a byte of the 150 MB body is read
            status, response = raw_http(port, post_head(None), chunked(150 << 20))
            assert status == 403, response[:200]
            # the cookie, and a body declared over --max-body-size (1 MiB): 413 unread
            cookie = "_xsrf=abc"
            status, response = raw_http(port, post_head(150 << 20, cookie), in_chunks(150 << 20))
            assert status == 413, response[:200]
            # a chunked body that does not say its size: 413 once 1 MiB has come
            status, response = raw_http(port, post_head(None, cookie), chunked(150 << 20))
            assert status == 413, response[:200]
        watch.report("150 MB login POSTs (no XSRF cookie; declared; chunked)")
        assert watch.growth_mb < 32
        # a login form of ordinary size still works
        form = b"_xsrf=abc&name=ann"
        status, response = raw_http(port, post_head(len(form), cookie) + form)
        assert status == 302, response[:300]


async def test_an_anonymous_request_under_an_auth_module_logs_one_line() -> None:
    with run_app_server(BIG_DOC, args=LOGIN_ARGS) as server:
        for path in (
            "/big_doc",
            "/big_doc/metadata",
            "/big_doc/autoload.js?bokeh-autoload-element=x",
        ):
            status, response = raw_http(
                server.port,
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
            )
            assert status == 302, response[:200]
        log = server.log()
        assert "Traceback" not in log and "Content-Length" not in log, log[-3000:]


async def test_forwarded_headers_are_believed_only_from_trusted_proxies() -> None:
    limit = ["--use-xheaders", "--max-sessions-per-client", "1"]
    # the test's client (127.0.0.1) is no trusted proxy here: its X-Forwarded-For is ignored
    untrusted = [*limit, "--forwarded-allow-ips", "10.9.8.7"]
    for trusted, args in ((False, untrusted), (True, limit)):  # by default loopback is trusted
        with run_app_server(BIG_DOC, args=args) as server:
            opened = []
            for n in range(2):
                token = fetch_token(f"{server.url}/big_doc?mb=0")
                try:
                    socket_ = await RawWebSocket.connect(
                        server.port,
                        "/big_doc/ws",
                        ["bokeh", token],
                        headers=[f"X-Forwarded-For: 203.0.113.{n + 1}"],
                    )
                except HandshakeRefused as refused:
                    opened.append(refused.status)
                    continue
                first = await socket_.receive()
                opened.append(101 if not isinstance(first, Closed) else first.code)
                await socket_.close()
            assert opened == ([101, 101] if trusted else [101, 429]), (trusted, opened)
            # a spoofed public host does not let another origin in
            token = fetch_token(f"{server.url}/big_doc?mb=0")
            spoof = ["X-Forwarded-Host: evil.example"]
            if not trusted:
                with pytest.raises(HandshakeRefused) as refused:
                    await RawWebSocket.connect(
                        server.port,
                        "/big_doc/ws",
                        ["bokeh", token],
                        origin="http://evil.example",
                        headers=spoof,
                    )
                assert refused.value.status == 403

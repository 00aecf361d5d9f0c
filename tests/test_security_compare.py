"""The same attacks against app_server and against Bokeh's own ``bokeh serve``, side by side.

Each attack runs against both servers, started alike: signed session ids with the same
``BOKEH_SECRET_KEY``, the same ``--websocket-max-message-size``, the same apps and the same
auth module (a plain ``user`` cookie names the user). Each row asserts both sides: what
app_server must do, and what ``bokeh serve`` does (bokeh 3.9 and 3.10 alike), so a difference
the table shows is a difference the test checks, and a row whose attack stopped working (a probe
that reaches nothing, a server that refuses everything) fails instead of passing. ``pytest -s``
prints the table that SECURITY.md reproduces.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bokeh.util.token import (
    generate_jwt_token,
    generate_session_id,
    get_session_id,
    get_token_payload,
)

from app_server import protocol
from fuzz.framing import BokehMessage
from fuzz.rawws import (
    BINARY,
    TEXT,
    Closed,
    HandshakeRefused,
    RawWebSocket,
    WireFrame,
    binary,
    bokeh_frames,
    find_model,
    message_frames,
    text,
)
from tests.conftest import EXAMPLES, TEST_APPS
from tests.servers import RunningServer, rss_mb, run_app_server, run_bokeh_serve
from tests.test_load import honest_reader

SECRET = "app-server-security-compare-secret-key-0123456789"
LIMIT = 256 * 1024
QUEUE_SIZE = 32
SLOW_WINDOW_S = 6.0  # bokeh serve is watched this long; app_server until 2 s after its drop
ALICE, MALLORY = "user=alice", "user=mallory"
AUTH_MODULE = '''
"""The user is a plain cookie: enough to tell two users apart in a test."""
login_url = "/login"


def get_user(request_handler):
    return request_handler.get_cookie("user")
'''
TOKEN = re.compile(r'"token":\s*"([^"]+)"')


@dataclass
class Target:
    name: str
    server: RunningServer

    def get(self, path: str, cookie: str | None = ALICE) -> tuple[int, dict[str, str], str]:
        """An HTTP GET with the path sent exactly as written (no client-side normalization)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=15)
        try:
            connection.putrequest("GET", path, skip_accept_encoding=True)
            if cookie:
                connection.putheader("Cookie", cookie)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            connection.close()

    def token(self, app: str = "/demo", cookie: str = ALICE, query: str = "") -> str:
        status, _, body = self.get(app + (f"?{query}" if query else ""), cookie)
        match = TOKEN.search(body)
        assert status == 200 and match, f"{self.name}: no token in {app}: {status} {body[:300]}"
        return match.group(1)

    async def connect(
        self,
        token: str,
        app: str = "/demo",
        cookie: str | None = ALICE,
        origin: str | None = None,
        **kwargs: Any,
    ) -> RawWebSocket:
        headers = [f"Cookie: {cookie}"] if cookie else []
        return await RawWebSocket.connect(
            self.server.port,
            f"{app}/ws",
            ["bokeh", token],
            origin=origin,
            headers=headers,
            **kwargs,
        )

    def rss(self) -> float:
        return rss_mb(self.server.pid)


@dataclass
class Seen:
    """What a websocket attempt met: a refused handshake, or replies and maybe a close."""

    status: int | None = None  # the HTTP status of a refused handshake
    body: str = ""
    acked: bool = False
    replies: list[BokehMessage] = field(default_factory=list)
    closed: Closed | None = None  # None: the connection stayed open

    def errors(self) -> list[dict[str, Any]]:
        return [m.content for m in self.replies if m.msgtype == protocol.ERROR]

    def transcript(self) -> str:
        """Everything the client was told: the handshake's body, every reply in full (an
        ERROR's traceback too), the close reason."""
        parts = [self.body, *(json.dumps(reply.content) for reply in self.replies)]
        return "\n".join([*parts, self.closed.reason if self.closed else ""])

    def summary(self) -> str:
        if self.status is not None:
            reason = self.body.strip().splitlines()[0][:90] if self.body.strip() else ""
            return f"HTTP {self.status}" + (f" ({reason})" if reason else "")
        parts = [] if self.acked else ["handshake accepted, no ACK"]
        for reply in self.replies:
            if reply.msgtype == protocol.ERROR:
                text = str(reply.content.get("text"))[:80]
                tb = reply.content.get("traceback")
                extra = f", with a {len(tb) // 1000 or 1} kB traceback" if tb else ""
                parts.append(f"ERROR {text!r}{extra}")
            elif reply.msgtype != protocol.SERVER_INFO_REPLY:
                parts.append(reply.msgtype)
        if self.closed is None:
            parts.append("stays open")
        elif not self.closed.clean:
            parts.append("connection dropped without a close frame")
        else:
            code = "no code" if self.closed.code is None else str(self.closed.code)
            if self.closed.code is not None and not (
                1000 <= self.closed.code <= 1014 or 3000 <= self.closed.code <= 4999
            ):
                code += " (not a valid RFC 6455 code)"
            reason = f" {self.closed.reason[:70]!r}" if self.closed.reason else ""
            parts.append(f"close {code}{reason}")
        return "; ".join(parts)


async def attempt(
    target: Target,
    frames: list[WireFrame] = (),  # type: ignore[assignment]
    *,
    token: str | None = None,
    app: str = "/demo",
    cookie: str | None = ALICE,
    origin: str | None = None,
    sentinel: bool = True,
) -> Seen:
    """Open a websocket, wait for ACK, send ``frames`` and then a SERVER-INFO-REQ; collect
    the replies until that request is answered or the server closes."""
    seen = Seen()
    try:
        socket_ = await target.connect(
            token or target.token(app), app=app, cookie=cookie, origin=origin
        )
    except HandshakeRefused as refused:
        seen.status, seen.body = refused.status, refused.body
        return seen
    info = protocol.make_message(protocol.SERVER_INFO_REQ)
    try:
        first = await socket_.receive(timeout=10)
        if isinstance(first, Closed):
            seen.closed = first
            return seen
        seen.acked = first.msgtype == protocol.ACK
        await socket_.send_frames([*frames, *(message_frames(info) if sentinel else [])])
        for _ in range(1000):
            try:
                result = await socket_.receive(timeout=5 if sentinel else 2)
            except TimeoutError:
                break  # neither a reply nor a close: the connection waits
            if isinstance(result, Closed):
                seen.closed = result
                break
            if result.reqid is None:
                continue
            seen.replies.append(result)
            if result.reqid == info.msgid:
                break
    finally:
        if seen.closed is None:
            await socket_.close()
    return seen


def patch_frames(events: list[Any]) -> list[WireFrame]:
    header = {"msgid": "attack", "msgtype": protocol.PATCH_DOC}
    return bokeh_frames(header, {}, {"events": events})


async def pull_doc(target: Target, token: str, cookie: str = ALICE) -> dict[str, Any]:
    socket_ = await target.connect(token, cookie=cookie)
    try:
        assert (await socket_.receive_message()).msgtype == protocol.ACK
        reply = await socket_.request(protocol.make_message(protocol.PULL_DOC_REQ))
        return reply.content["doc"]
    finally:
        await socket_.close()


def tampered(token: str) -> str:
    """The token with another session id in its payload, its signature left as it was."""
    payload_part, _, signature = token.partition(".")
    padded = payload_part + "=" * (-len(payload_part) % 4)
    payload = json.loads(base64.urlsafe_b64decode(padded))
    payload["session_id"] = generate_session_id(secret_key=SECRET.encode(), signed=True)
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{encoded}.{signature}"


def cookies_in(token: str) -> dict[str, str]:
    payload = get_token_payload(token)
    return dict(payload.get("cookies") or {})


# -- the attacks ---------------------------------------------------------------------------------

Result = Any
Attack = Callable[[Target], Awaitable[Result]]


async def foreign_origin(t: Target) -> Seen:
    return await attempt(t, origin="http://evil.example")


async def no_login(t: Target) -> Seen:
    return await attempt(t, token=t.token(), cookie=None)


async def forged_token(t: Target) -> Seen:
    key = b"not-the-servers-secret-key-at-all-0123456789"
    forged = generate_jwt_token(generate_session_id(secret_key=key, signed=True), key, signed=True)
    return await attempt(t, token=forged)


async def tampered_token(t: Target) -> Seen:
    return await attempt(t, token=tampered(t.token()))


async def expired_token(t: Target) -> Seen:
    session_id = generate_session_id(secret_key=SECRET.encode(), signed=True)
    token = generate_jwt_token(session_id, SECRET.encode(), signed=True, expiration=-60)
    return await attempt(t, token=token)


async def another_users_token(t: Target) -> Seen:
    alice = t.token()
    await pull_doc(t, alice)  # alice's session exists
    return await attempt(t, token=alice, cookie=MALLORY)


@dataclass
class SessionIdTheft:
    page: str  # what mallory's page request for alice's session id gave her
    leaked_cookies: dict[str, str]  # alice's cookies found in the token mallory got
    seen: Seen  # mallory's websocket with that token

    def summary(self) -> str:
        leak = (
            f"the page hands mallory alice's token, with alice's cookies {self.leaked_cookies}"
            if self.leaked_cookies
            else "the page gives mallory a token of her own"
        )
        return f"{self.page}; {leak}; her websocket: {self.seen.summary()}"


async def another_users_session_id(t: Target) -> SessionIdTheft:
    alice = t.token()
    await pull_doc(t, alice)  # alice's session exists, and mallory learnt its id
    session_id = urllib.parse.quote(get_session_id(alice))
    status, _, body = t.get(f"/demo?bokeh-session-id={session_id}", MALLORY)
    match = TOKEN.search(body)
    if status != 200 or not match:
        return SessionIdTheft(f"HTTP {status}", {}, Seen(status=status, body=body[:200]))
    token = match.group(1)
    leaked = {k: v for k, v in cookies_in(token).items() if v != "mallory"}
    return SessionIdTheft("HTTP 200", leaked, await attempt(t, token=token, cookie=MALLORY))


async def oversized_frame(t: Target) -> Seen:
    return await attempt(t, [text("x" * (LIMIT + 1))], sentinel=False)


async def oversized_in_parts(t: Target) -> Seen:
    """One message of 1.5 limits, spread over buffer frames that are each under the limit."""
    header = {"msgid": "big", "msgtype": protocol.PATCH_DOC, "num_buffers": 3}
    parts = [b"\0" * (LIMIT // 2)] * 3
    return await attempt(t, bokeh_frames(header, {}, {"events": []}, parts))


async def reserved_bits(t: Target) -> Seen:
    return await attempt(
        t, [WireFrame(TEXT, b'{"msgid":"1","msgtype":"ACK"}', rsv=4)], sentinel=False
    )


async def unmasked_frame(t: Target) -> Seen:
    return await attempt(
        t, [WireFrame(TEXT, b'{"msgid":"1","msgtype":"ACK"}', masked=False)], sentinel=False
    )


async def invalid_utf8(t: Target) -> Seen:
    return await attempt(t, [WireFrame(TEXT, b'{"msgid":"\xff","msgtype":"ACK"}')], sentinel=False)


async def non_json(t: Target) -> Seen:
    return await attempt(t, [text("this is not JSON")])


async def deeply_nested(t: Target) -> Seen:
    return await attempt(t, [text("[" * 100_000)])


async def wrong_shape(t: Target) -> Seen:
    return await attempt(t, [text('["msgid", "msgtype"]')])


async def wrong_content_shape(t: Target) -> Seen:
    header = {"msgid": "shape", "msgtype": protocol.PATCH_DOC}
    return await attempt(t, bokeh_frames(header, {}, {"events": {"not": "a list"}}))


async def unknown_msgtype(t: Target) -> Seen:
    return await attempt(t, bokeh_frames({"msgid": "u", "msgtype": "NOT-A-TYPE"}, {}, {}))


async def buffers_never_sent(t: Target) -> Seen:
    header = {"msgid": "b", "msgtype": protocol.PATCH_DOC, "num_buffers": 2}
    return await attempt(t, bokeh_frames(header, {}, {"events": []}))  # then the sentinel


async def binary_header(t: Target) -> Seen:
    return await attempt(t, [binary(b'{"msgid":"1","msgtype":"PULL-DOC-REQ"}')])


async def binary_content(t: Target) -> Seen:
    header = text('{"msgid":"1","msgtype":"PULL-DOC-REQ"}')
    return await attempt(t, [header, text("{}"), WireFrame(BINARY, b"{}")])


async def unknown_model(t: Target) -> Seen:
    event = {"kind": "ModelChanged", "model": {"id": "p999999"}, "attr": "value", "new": 2}
    return await attempt(t, patch_frames([event]))


@dataclass
class DocCheck:
    seen: Seen
    changed: bool  # the attacked document changed

    def summary(self) -> str:
        changed = "the document CHANGED" if self.changed else "the document is unchanged"
        return f"{self.seen.summary()}; {changed}"


def model_state(doc: dict[str, Any]) -> str:
    """The demo's widgets as the document holds them (buffer ids change with every pull)."""
    state = {}
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("name") in ("Slider", "Button", "Div"):
                state[node["id"]] = node.get("attributes")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return json.dumps(state, sort_keys=True)


async def unknown_property(t: Target) -> DocCheck:
    token = t.token()
    before = await pull_doc(t, token)
    slider = find_model(before, name="frequency")
    event = {"kind": "ModelChanged", "model": {"id": slider}, "attr": "no_such_prop", "new": 2}
    seen = await attempt(t, patch_frames([event]), token=token)
    after = await pull_doc(t, token)
    return DocCheck(seen, model_state(before) != model_state(after))


async def another_documents_model(t: Target) -> DocCheck:
    """Mallory's session sends events naming the models of alice's session."""
    alice = t.token()
    before = await pull_doc(t, alice)
    slider = find_model(before, name="frequency")
    event = {"kind": "ModelChanged", "model": {"id": slider}, "attr": "value", "new": 4.2}
    seen = await attempt(t, patch_frames([event]), token=t.token(cookie=MALLORY), cookie=MALLORY)
    after = await pull_doc(t, alice)
    return DocCheck(seen, model_state(before) != model_state(after))


@dataclass
class SlowReader:
    dropped_after: float | None  # seconds until the server logged the drop
    closed: Closed | None  # what the slow client found at the end of its buffers
    growth_mb: float
    others_late: int  # messages the session's other client got in the window's last 2 s

    def summary(self) -> str:
        if self.dropped_after is not None and self.closed is not None:
            how = f"dropped after {self.dropped_after:.1f}s: {self.closed.describe()}"
        else:
            how = f"not dropped in {SLOW_WINDOW_S:.0f}s"
        return (
            f"{how}; server RSS {self.growth_mb:+.0f} MB; the session's other client got "
            f"{self.others_late} messages in the last 2 s"
        )


async def slow_reader(t: Target) -> SlowReader:
    """~9 MB/s streamed to a session's two clients; one has a tiny window and never reads."""
    token = t.token("/security_stream", query="rows=1000")
    other = await t.connect(token, app="/security_stream")
    assert (await other.receive_message()).msgtype == protocol.ACK
    await other.request(protocol.make_message(protocol.PULL_DOC_REQ))
    seqs: list[int] = []
    arrivals: list[float] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(honest_reader(other, seqs, arrivals, stop))
    await asyncio.sleep(0.5)
    baseline = peak = t.rss()
    slow = await t.connect(token, app="/security_stream", rcvbuf=4096)
    assert (await slow.receive_message()).msgtype == protocol.ACK  # bokeh serve needs the wait
    await slow.send_frames(message_frames(protocol.make_message(protocol.PULL_DOC_REQ)))
    started = time.monotonic()
    dropped_after = None
    # watch until 2 s after a drop (the other client must go on receiving), at most the window
    for _ in range(int(SLOW_WINDOW_S * 10)):
        await asyncio.sleep(0.1)
        peak = max(peak, t.rss())
        elapsed = time.monotonic() - started
        if dropped_after is None and "behind; disconnecting it" in t.server.log():
            dropped_after = elapsed
        if dropped_after is not None and elapsed > dropped_after + 2:
            break
    ended = time.monotonic()
    stop.set()
    await asyncio.wait_for(reader, 30)
    await other.close()
    closed: Closed | None = None
    # now read: a dropped client finds its close frame behind what TCP buffered; a client
    # that was not dropped is still being streamed to after a second of reading
    while time.monotonic() < ended + (10 if dropped_after is not None else 1):
        try:
            result = await slow.receive(timeout=3)
        except TimeoutError:
            break
        if isinstance(result, Closed):
            closed = result
            break
    slow.abort()
    late = sum(1 for arrival in arrivals if arrival > ended - 2)
    return SlowReader(dropped_after, closed, peak - baseline, late)


@dataclass
class Flood:
    outcomes: list[str]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        return ", ".join(f"{n} x {outcome}" for outcome, n in counts.items())


async def flood_one_address(t: Target, sessions: int = 12) -> Flood:
    """Sessions opened from one client address, all held open at once."""
    sockets, outcomes = [], []
    try:
        for _ in range(sessions):
            try:
                socket_ = await t.connect(t.token("/whoami"), app="/whoami")
            except HandshakeRefused as refused:
                outcomes.append(f"HTTP {refused.status}")
                continue
            sockets.append(socket_)
            first = await socket_.receive(timeout=10)
            outcomes.append("ACK" if not isinstance(first, Closed) else first.describe())
    finally:
        for socket_ in sockets:
            await socket_.close()
    return Flood(outcomes)


TRAVERSALS = [
    "/static/../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/js/..%5c..%5c..%5c..%5cetc%5cpasswd",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static/....//....//....//etc/passwd",
    "/lifecycle_app/static/../main.py",
    "/lifecycle_app/static/%2e%2e/main.py",
    "/lifecycle_app/static/..%2fmain.py",
    "/lifecycle_app/static/%2e%2e%2fserver_lifecycle.py",
    "/static//etc/passwd",
]


# files the static routes serve: a traversal that finds nothing must still find these
STATIC_CONTROLS = {
    "/static/js/bokeh.min.js": "Bokeh",
    "/lifecycle_app/static/style.css": ".greeting",
}
# what the traversals aim at, and a line each would show if it leaked
LEAK_MARKERS = {
    Path("/etc/passwd"): "root:x:0:0",
    EXAMPLES / "lifecycle_app" / "server_lifecycle.py": "def on_server_loaded",
    EXAMPLES / "lifecycle_app" / "main.py": "from .helpers import",
}


@dataclass
class Traversal:
    results: dict[str, tuple[int, bool]]  # path: (status, leaked)
    controls: dict[str, bool]  # a file the static routes do serve: served with its content

    def summary(self) -> str:
        statuses = sorted({status for status, _ in self.results.values()})
        leaked = [path for path, (_, bad) in self.results.items() if bad]
        text = f"{len(self.results)} paths: HTTP {', '.join(map(str, statuses))}"
        return text + (f"; LEAKED {leaked}" if leaked else "; nothing outside the static dirs")


async def directory_traversal(t: Target) -> Traversal:
    secrets = (*LEAK_MARKERS.values(), "curdoc()")
    results = {}
    for path in TRAVERSALS:
        status, _, body = t.get(path)
        results[path] = (status, status == 200 and any(s in body for s in secrets))
    controls = {}
    for path, words in STATIC_CONTROLS.items():
        status, _, body = t.get(path)
        controls[path] = status == 200 and words in body
    return Traversal(results, controls)


@dataclass
class Traces:
    found: dict[str, str]  # where: what the client got
    patch_errors: int  # ERROR replies to the bad patch (the probe worked: one)

    def summary(self) -> str:
        parts = []
        for where, body in self.found.items():
            leak = has_traceback(body)
            parts.append(f"{where}: {'a TRACEBACK' if leak else 'no traceback'}")
        return "; ".join(parts)


async def stack_traces(t: Target) -> Traces:
    found = {}
    status, _, body = t.get("/broken")
    found[f"broken app's page (HTTP {status})"] = body
    match = TOKEN.search(body)
    if status == 200 and match:  # app_server runs the app when the websocket opens
        seen = await attempt(t, token=match.group(1), app="/broken")
        found[f"its websocket ({seen.summary()[:60]})"] = seen.transcript()
    status, _, body = t.get("/demo?bokeh-token=not-a-token")
    found[f"page with a garbage token (HTTP {status})"] = body
    event = {"kind": "ModelChanged", "model": {"id": "p999999"}, "attr": "value", "new": 2}
    seen = await attempt(t, patch_frames([event]))
    found["ERROR reply to a bad patch"] = seen.transcript()
    return Traces(found, len(seen.errors()))


def has_traceback(body: str) -> bool:
    return "Traceback" in body or 'File "' in body


# the rows of SECURITY.md's table, in order, with what app_server must do and what bokeh serve
# does; a check of bokeh serve's side pins the contrast the row claims (or the parity)


def refused(status: int, words: str = "") -> Callable[[Seen], None]:
    def check(seen: Seen) -> None:
        assert seen.status == status, seen.summary()
        assert words.lower() in seen.body.lower(), seen.body
        assert "Traceback" not in seen.body

    return check


def closes(code: int, words: str = "") -> Callable[[Seen], None]:
    def check(seen: Seen) -> None:
        assert seen.acked and seen.closed is not None, seen.summary()
        assert seen.closed.clean and seen.closed.code == code, seen.summary()
        assert words in seen.closed.reason, seen.summary()

    return check


def error_reply(words: str, *, traceback: bool = False) -> Callable[[Seen], None]:
    """One ERROR naming ``words``, the connection open; with a traceback or without."""

    def check(seen: Seen) -> None:
        assert seen.closed is None, f"the connection should stay open: {seen.summary()}"
        errors = seen.errors()
        assert len(errors) == 1 and words in errors[0]["text"], seen.summary()
        if traceback:
            assert has_traceback(str(errors[0].get("traceback"))), seen.summary()
        else:
            assert errors[0]["traceback"] is None, seen.summary()

    return check


def no_session(seen: Seen) -> None:
    """bokeh serve upgrades the websocket, then closes it without an ACK: no session."""
    assert seen.status is None and not seen.acked, seen.summary()
    assert seen.closed is not None, seen.summary()


def stays_open(seen: Seen) -> None:
    """The server took it: an ACK, and the connection is still open at the end."""
    assert seen.acked and seen.closed is None, seen.summary()


def dropped(seen: Seen) -> None:
    """The server hung up without a close frame (no close code for the client to see)."""
    assert seen.acked and seen.closed is not None and not seen.closed.clean, seen.summary()


def check_theft(theft: SessionIdTheft) -> None:
    assert not theft.leaked_cookies, theft.summary()
    assert theft.seen.status == 403 or theft.seen.closed is not None, theft.summary()


def theft_succeeds(theft: SessionIdTheft) -> None:
    """bokeh serve: mallory's page carries alice's cookies, and her websocket works."""
    assert theft.leaked_cookies == {"user": "alice"}, theft.summary()
    stays_open(theft.seen)


def check_unchanged(expected: Callable[[Seen], None]) -> Callable[[DocCheck], None]:
    def check(result: DocCheck) -> None:
        expected(result.seen)
        assert not result.changed, result.summary()

    return check


def ok_reply(seen: Seen) -> None:
    assert seen.closed is None and seen.replies, seen.summary()
    assert seen.replies[0].msgtype == protocol.OK, seen.summary()


def check_slow(result: SlowReader) -> None:
    assert result.dropped_after is not None and result.closed is not None, result.summary()
    assert result.closed.code == 1008, result.summary()
    assert result.growth_mb < 40, result.summary()
    assert result.others_late >= 20, result.summary()


def never_dropped(result: SlowReader) -> None:
    assert result.dropped_after is None and result.closed is None, result.summary()


def check_traversal(*statuses: int) -> Callable[[Traversal], None]:
    def check(result: Traversal) -> None:
        assert all(result.controls.values()), f"the static routes serve nothing: {result.controls}"
        assert not any(leaked for _, leaked in result.results.values()), result.summary()
        assert all(status in statuses for status, _ in result.results.values()), result.results

    return check


def check_traces(result: Traces) -> None:
    assert result.patch_errors == 1, result.found
    for where, body in result.found.items():
        assert not has_traceback(body), (where, body)


def patch_error_has_a_traceback(result: Traces) -> None:
    """bokeh serve: pages hide tracebacks, the ERROR reply to a bad patch carries one."""
    assert result.patch_errors == 1, result.found
    for where, body in result.found.items():
        assert has_traceback(body) == (where == "ERROR reply to a bad patch"), (where, body)


# (row, attack, what app_server must do, what bokeh serve does)
ATTACKS: list[Any] = [
    ("cross-site websocket hijacking (foreign Origin)", foreign_origin,
     refused(403, "--allow-websocket-origin"), refused(403, "cross origin")),
    ("websocket without a login (auth module)", no_login, refused(403, "log in"), no_session),
    ("forged token (signed with another key)", forged_token, refused(403, "signature"),
     no_session),
    ("tampered token (session id changed, signature kept)", tampered_token,
     refused(403, "signature"), no_session),
    ("expired token for a session that is gone", expired_token, refused(403, "expired"),
     no_session),
    ("another user's token (alice's token, mallory's login)", another_users_token,
     refused(403, "another user"), stays_open),
    ("another user's session id (mallory asks a page for alice's session)",
     another_users_session_id, check_theft, theft_succeeds),
    ("oversized message (one frame > --websocket-max-message-size)", oversized_frame,
     closes(1009), closes(1009)),
    ("oversized message (frames each under the limit, together over it)", oversized_in_parts,
     closes(1009, "exceeds the limit"), ok_reply),
    ("malformed frame: reserved bits set", reserved_bits, closes(1002), dropped),
    ("malformed frame: client frame not masked", unmasked_frame, closes(1002), stays_open),
    ("malformed frame: text frame with invalid UTF-8", invalid_utf8, closes(1007), dropped),
    ("non-JSON header", non_json, closes(1007, "not valid JSON"),
     closes(10000, "failed to parse")),
    ("deeply nested JSON (100 kB of '[')", deeply_nested, closes(1007, "nested too deeply"),
     closes(10000, "failed to parse")),
    ("JSON of the wrong shape (header is a list)", wrong_shape, closes(1002, "JSON object"),
     closes(10000, "failed to parse")),
    ("JSON of the wrong shape (PATCH-DOC events not a list)", wrong_content_shape,
     error_reply("events"), error_reply("AssertionError", traceback=True)),
    ("unknown msgtype", unknown_msgtype, closes(1002, "does not accept 'NOT-A-TYPE'"),
     closes(10000, "failed to parse")),
    ("buffers announced but never sent (next header arrives)", buffers_never_sent,
     closes(1002, "buffer header"), closes(10001, "Malformed buffer header")),
    ("binary frame out of place (as the header)", binary_header, closes(1003, "text frame"),
     closes(10001, "expected text fragment")),
    ("binary frame out of place (as the content)", binary_content, closes(1003, "text frame"),
     closes(10001, "expected text fragment")),
    ("patch naming an unknown model", unknown_model, error_reply("p999999"),
     error_reply("p999999", traceback=True)),
    ("patch naming an unknown property", unknown_property, check_unchanged(ok_reply),
     check_unchanged(ok_reply)),
    ("events for another document's models", another_documents_model,
     check_unchanged(error_reply("UnknownReferenceError")),
     check_unchanged(error_reply("UnknownReferenceError", traceback=True))),
    ("slow reader (never reads while a 10 ms callback streams)", slow_reader, check_slow,
     never_dropped),
    ("directory traversal on static routes", directory_traversal, check_traversal(400, 404),
     check_traversal(403, 404)),
    ("stack traces in responses", stack_traces, check_traces, patch_error_has_a_traceback),
]  # fmt: skip


FLOOD_ROW = "session flooding (limits: 2 per client address, 4 per app)"


def summary(result: Any) -> str:
    return result.summary() if hasattr(result, "summary") else str(result)


@pytest.fixture(scope="module")
def table() -> Iterator[dict[str, dict[str, str]]]:
    rows: dict[str, dict[str, str]] = {}
    yield rows
    lines = ["", "| attack | app_server | bokeh serve |", "|---|---|---|"]
    for attack, seen in rows.items():
        cells = [seen.get(k, "-").replace("|", "\\|") for k in ("app_server", "bokeh serve")]
        lines.append(f"| {attack} | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    auth = tmp_path_factory.mktemp("auth") / "auth.py"
    auth.write_text(AUTH_MODULE)
    apps = [
        EXAMPLES / "demo.py",
        TEST_APPS / "security_stream.py",
        TEST_APPS / "whoami.py",
        TEST_APPS / "broken.py",
        EXAMPLES / "lifecycle_app",
    ]
    common = [
        "--session-ids", "signed",
        "--websocket-max-message-size", str(LIMIT),
        "--auth-module", str(auth),
    ]  # fmt: skip
    env = {"BOKEH_SECRET_KEY": SECRET}
    ours = [*common, "--outbound-queue-size", str(QUEUE_SIZE), "--log-level", "info"]
    with (
        run_app_server(*apps, args=ours, env=env) as app_server,
        run_bokeh_serve(*apps, args=common, env=env) as bokeh,
    ):
        yield {
            "app_server": Target("app_server", app_server),
            "bokeh serve": Target("bokeh serve", bokeh),
        }


def _id(entry: Any) -> str:
    name = entry.values[0] if hasattr(entry, "values") else entry[0]
    return re.sub(r"[^a-z0-9]+", "-", name.split(" (")[0].lower()).strip("-")


@pytest.mark.parametrize(
    ("name", "attack", "check", "bokeh_does"), ATTACKS, ids=[_id(a) for a in ATTACKS]
)
async def test_attack(
    name: str,
    attack: Attack,
    check: Callable[[Any], None],
    bokeh_does: Callable[[Any], None],
    targets: dict[str, Target],
    table: dict[str, dict[str, str]],
) -> None:
    results = {}
    for kind, target in targets.items():
        results[kind] = await asyncio.wait_for(attack(target), 120)
        table.setdefault(name, {})[kind] = summary(results[kind])
    failures = []
    for kind, expected in (("app_server", check), ("bokeh serve", bokeh_does)):
        try:
            expected(results[kind])
        except AssertionError as failure:
            failures.append(f"{kind}: {failure}")
    assert not failures, "\n".join(failures)


async def test_session_flooding(table: dict[str, dict[str, str]]) -> None:
    """Limits per app and per client address, on a server of its own (they bind every app)."""
    args = ["--max-sessions-per-app", "4", "--max-sessions-per-client", "2"]
    plan = [  # (client address, what its new session must meet), every session held open
        ("127.0.0.1", "ACK"),
        ("127.0.0.1", "ACK"),
        ("127.0.0.1", "HTTP 429"),  # a third from one address
        ("127.0.0.2", "ACK"),
        ("127.0.0.2", "ACK"),  # the app now holds 4
        ("127.0.0.3", "HTTP 503"),  # the app is full
    ]
    outcomes: list[str] = []
    with run_app_server(TEST_APPS / "whoami.py", args=args) as server:
        target = Target("app_server", server)
        sockets: list[RawWebSocket] = []
        try:
            for source, _ in plan:
                token = target.token("/whoami", cookie="")
                try:
                    socket_ = await target.connect(token, "/whoami", cookie=None, source=source)
                except HandshakeRefused as refused:
                    outcomes.append(f"HTTP {refused.status} ({refused.body[:70]})")
                    continue
                sockets.append(socket_)
                first = await socket_.receive(timeout=10)
                outcomes.append(first.describe() if isinstance(first, Closed) else first.msgtype)
        finally:
            for socket_ in sockets:
                await socket_.close()
    for (source, expected), outcome in zip(plan, outcomes, strict=True):
        assert outcome.startswith(expected), (source, outcomes)
    ours = "; ".join(f"{s}: {o}" for (s, _), o in zip(plan, outcomes, strict=True))
    table.setdefault(FLOOD_ROW, {})["app_server"] = ours


async def test_session_flooding_bokeh_serve(
    targets: dict[str, Target], table: dict[str, dict[str, str]]
) -> None:
    flood = await flood_one_address(targets["bokeh serve"])
    row = table.setdefault(FLOOD_ROW, {})
    row["bokeh serve"] = f"no such limits; 12 sessions from 127.0.0.1: {flood.summary()}"
    assert flood.outcomes == ["ACK"] * 12, flood.summary()


def test_the_traversal_probes_would_see_a_leak() -> None:
    """Each file the traversals aim at holds the line its leak would show."""
    for path, marker in LEAK_MARKERS.items():
        assert marker in path.read_text(), path

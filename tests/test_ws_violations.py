"""Protocol violations on a live websocket: the close code, the replies before it, the log line.

Found by the live fuzzer (``make fuzz``, the ``fuzz`` package) and pinned down here, on
``app-server serve examples/demo.py`` with a 256 kB ``--websocket-max-message-size``. The raw
RFC 6455 client of :mod:`fuzz.rawws` sends the frames no library would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from bokeh.util.token import get_session_id

from app_server import protocol
from fuzz.rawws import TEXT, Closed, WireFrame, binary, fetch_token, message_frames, open_raw, text
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    args = ["--websocket-max-message-size", str(LIMIT), "--log-level", "info"]
    with run_app_server(EXAMPLES / "demo.py", args=args) as running:
        yield running


async def session_log_lines(
    server: RunningServer, session_id: str, since: int, words: str
) -> list[str]:
    """The session's log lines since ``since``, once one holds ``words`` (or after 5 s)."""
    lines: list[str] = []
    for _ in range(50):  # the log line follows the close
        lines = [line for line in server.log()[since:].splitlines() if session_id in line]
        if any(words in line for line in lines):
            break
        await asyncio.sleep(0.1)
    return lines


async def test_deeply_nested_json_closes_with_an_error_code_and_a_logged_reason(
    server: RunningServer,
) -> None:
    """Found by the fuzzer: the receiver's json.loads raised RecursionError, which escaped the
    reader loop; the websocket closed with 1000 and uvicorn logged an unhandled exception."""
    token = fetch_token(server.url + "/demo")
    since = len(server.log())
    socket_ = await open_raw(server, token)
    await socket_.send_frames([text("[" * 100_000)])  # 100 kB: well inside the size limit
    closed = await socket_.receive()
    assert isinstance(closed, Closed) and closed.clean
    assert closed.code == 1007, closed.describe()
    assert "nested too deeply" in closed.reason, closed.describe()
    logged = await session_log_lines(server, get_session_id(token), since, "closing the websocket")
    assert any("closing the websocket" in line for line in logged), logged
    assert "Exception in ASGI application" not in server.log()[since:]


async def test_replies_queued_before_a_violation_reach_the_client(server: RunningServer) -> None:
    socket_ = await open_raw(server, fetch_token(server.url + "/demo"))
    pulls = [protocol.make_message(protocol.PULL_DOC_REQ) for _ in range(60)]
    await socket_.send_frames([f for m in pulls for f in message_frames(m)] + [binary(b"?")])
    replies = []
    result = None
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
    server: RunningServer, frame: WireFrame, code: int
) -> None:
    token = fetch_token(server.url + "/demo")
    since = len(server.log())
    socket_ = await open_raw(server, token)
    await socket_.send_frames([frame])
    closed = await socket_.receive()
    assert isinstance(closed, Closed) and closed.code == code, closed
    lines = await session_log_lines(server, get_session_id(token), since, str(code))
    assert any(str(code) in line for line in lines), lines

"""Several processes: a page from one, its websocket to another; gunicorn with uvicorn workers.

Two ``app-server serve`` processes on two ports share ``BOKEH_SECRET_KEY`` with
``--session-ids signed``, which forces what a load balancer may do: the page (and its token) comes
from process A, the websocket goes to process B. Each process appends its lifecycle events to
the same LIFECYCLE_LOG file, so the log counts app code runs across processes.
"""

from __future__ import annotations

import re
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.util.token import (
    generate_jwt_token,
    generate_secret_key,
    generate_session_id,
    get_session_id,
)
from websockets.exceptions import InvalidStatus

from app_server import protocol
from tests.conftest import EXAMPLES, ROOT
from tests.servers import RunningServer, _run, free_port, run_app_server
from tests.wsclient import BokehSocket, fetch_token

SIGNED = ["--session-ids", "signed"]
CREATED = "app_server_sessions_created_total"


def metric(server: RunningServer, name: str) -> float:
    """The sum of a metric's samples on one server's /metrics."""
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every process: one secret key, one lifecycle log."""
    log = tmp_path_factory.mktemp("workers") / "events"
    return {"BOKEH_SECRET_KEY": generate_secret_key(), "LIFECYCLE_LOG": str(log)}


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory, shared: dict[str, str]
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """A and B, each serving two apps: /lifecycle_app (examples/lifecycle_app, whose own
    templates/index.html renders the document into the page) and /deferred_app, the same app
    without that template: its page needs no document, so (after the app's first page in each
    process, which runs the app code as bokeh serve does) the page runs no app code and the
    session is created where the websocket lands."""
    deferred = tmp_path_factory.mktemp("apps") / "deferred_app"
    ignore = shutil.ignore_patterns("templates")
    shutil.copytree(EXAMPLES / "lifecycle_app", deferred, ignore=ignore)
    apps = (deferred, EXAMPLES / "lifecycle_app")
    with (
        run_app_server(*apps, args=SIGNED, env=shared) as a,
        run_app_server(*apps, args=SIGNED, env=shared) as b,
    ):
        for server in (a, b):  # the first tab after a deploy
            fetch_token(server.url + "/deferred_app")
        yield a, b


def created(log: Path) -> list[str]:
    return [line for line in events(log) if line.startswith("session_created")]


def ws(server: RunningServer, app: str) -> str:
    return server.url.replace("http", "ws") + f"/{app}/ws"


async def pull_title_and_text(ws_url: str, token: str, name: str) -> tuple[str, str]:
    """Open the session's websocket, pull its document: the title and one Div's text."""
    async with await BokehSocket.open(ws_url, token) as socket:
        await socket.receive_type(protocol.ACK)
        doc = (await socket.request(protocol.PULL_DOC_REQ)).content["doc"]
    return doc["title"], model_text(doc["roots"], name)


def model_text(node: object, name: str) -> str:
    """The ``text`` of the model called ``name`` anywhere in a serialized document."""
    if isinstance(node, dict):
        attributes = node.get("attributes")
        if isinstance(attributes, dict) and attributes.get("name") == name:
            return str(attributes.get("text", ""))
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            if text := model_text(item, name):
                return text
    return ""


def test_lifecycle_hooks_run_once_per_process(
    two_processes: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    # as in Bokeh: each process loads its apps; two apps in each of two processes
    assert events(Path(shared["LIFECYCLE_LOG"])).count("server_loaded") == 4


async def test_the_websocket_creates_the_session_on_its_own_process_and_the_app_runs_once(
    two_processes: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    a, b = two_processes
    log = Path(shared["LIFECYCLE_LOG"])
    before = created(log), metric(a, CREATED), metric(b, CREATED)

    token = fetch_token(a.url + "/deferred_app?name=ann")
    assert created(log) == before[0], "the page ran no app code"

    title, info = await pull_title_and_text(ws(b, "deferred_app"), token, "info")

    # the session was built on B from A's token: its request and process_request payload
    assert title == "lifecycle app"
    assert info == "points: 5, greeting: hello ann"
    session_id = get_session_id(token)
    assert created(log) == [*before[0], f"session_created {session_id}"]
    assert metric(a, CREATED) == before[1]
    assert metric(b, CREATED) == before[2] + 1


async def test_a_page_that_never_connects_creates_no_session_anywhere(
    two_processes: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    log = Path(shared["LIFECYCLE_LOG"])
    before = created(log), [metric(server, CREATED) for server in two_processes]
    for server in two_processes:
        for _ in range(3):  # a crawler, a probe, curl
            fetch_token(server.url + "/deferred_app")
            urllib.request.urlopen(server.url + "/deferred_app/metadata", timeout=10).close()
    assert created(log) == before[0]
    assert [metric(server, CREATED) for server in two_processes] == before[1]


async def test_an_app_with_its_own_template_starts_its_session_on_the_page_process(
    two_processes: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    """The trade-off the README documents: such a page renders the document, so the session
    starts where the page was served; its websocket should reach the same process (sticky
    routing). Elsewhere it still works, from the token, but runs the app code a second time."""
    a, b = two_processes
    log = Path(shared["LIFECYCLE_LOG"])
    token = fetch_token(a.url + "/lifecycle_app")
    session_created = f"session_created {get_session_id(token)}"
    assert created(log).count(session_created) == 1

    # the same process: the page's session is reused, the app code does not run again
    title, _ = await pull_title_and_text(ws(a, "lifecycle_app"), token, "info")
    assert title == "lifecycle app"
    assert created(log).count(session_created) == 1

    # another process: the session is created there too
    title, _ = await pull_title_and_text(ws(b, "lifecycle_app"), token, "info")
    assert title == "lifecycle app"
    assert created(log).count(session_created) == 2


async def test_a_token_signed_with_another_key_is_refused(
    two_processes: tuple[RunningServer, RunningServer],
) -> None:
    a, _ = two_processes
    before = metric(a, CREATED)
    other_key = generate_secret_key()
    session_id = generate_session_id(secret_key=other_key, signed=True)
    token = generate_jwt_token(session_id, secret_key=other_key, signed=True)
    with pytest.raises(InvalidStatus) as refused:
        await BokehSocket.open(ws(a, "deferred_app"), token)
    assert refused.value.response.status_code == 403
    assert metric(a, CREATED) == before


async def test_gunicorn_with_uvicorn_workers_serves_pages_and_websockets() -> None:
    port = free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "examples.asgi_app:app"),
        *("--chdir", str(ROOT), "--bind", f"127.0.0.1:{port}", "--workers", "2"),
        *("--worker-class", "uvicorn_worker.UvicornWorker", "--graceful-timeout", "5"),
    ]
    env = {"BOKEH_SECRET_KEY": generate_secret_key(), "BOKEH_SIGN_SESSIONS": "true"}
    with _run(command, port, env, "") as server:
        for _ in range(4):  # the page and its websocket may reach either worker
            token = fetch_token(server.url + "/demo")
            title, status = await pull_title_and_text(
                server.url.replace("http", "ws") + "/demo/ws", token, "status"
            )
            assert (title, status) == ("app_server demo", "frequency = 1.0, resets: 0")
        assert server.log().count("Booting worker") == 2

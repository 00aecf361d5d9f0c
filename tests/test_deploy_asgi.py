"""app_server inside other ASGI apps: FastAPI and Starlette mounts, ASGI root_path, the host's
lifespan, and examples/fastapi_app.py for real (uvicorn, Chromium).

Every URL a browser or client uses (page, websocket, autoload.js, BokehJS under /static, an app's
own static/, the index, metadata) must follow the mount point and the root path. Lifecycle hooks
(examples/lifecycle_app appends them to $LIFECYCLE_LOG) must run exactly once per process.
"""

from __future__ import annotations

import asyncio
import re
import runpy
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import pytest
from bokeh.util.token import get_session_id
from fastapi import FastAPI
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from app_server import create_app, protocol
from app_server.app import mounted_lifespan
from tests.browser import watch_errors
from tests.conftest import EXAMPLES, ROOT
from tests.servers import RunningServer, _run, free_port
from tests.wsclient import TOKEN, BokehSocket

BOKEH_READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"
APPS = {"/demo": EXAMPLES / "demo.py", "/lifecycle_app": EXAMPLES / "lifecycle_app"}


@pytest.fixture
def lifecycle_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lifecycle.log"
    monkeypatch.setenv("LIFECYCLE_LOG", str(path))
    return path


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- in-process: every URL under each kind of mount and root path --------------------------------


def host_for(kind: str) -> tuple[ASGIApp, str]:
    """An ASGI app serving APPS, and the path app_server is mounted at inside it."""
    dash = create_app(APPS)
    if kind == "fastapi":
        api = FastAPI(lifespan=mounted_lifespan(dash))
        api.mount("/dash", dash)
        return api, "/dash"
    if kind == "starlette":
        return Starlette(
            routes=[Mount("/bokeh", app=dash)], lifespan=mounted_lifespan(dash)
        ), "/bokeh"
    return dash, ""


def pull_over_testclient(client: TestClient, ws_path: str, token: str) -> str:
    """The title of the document pulled over a websocket of Starlette's test client."""
    receiver = protocol.Receiver()

    def receive(ws: object) -> protocol.Message:
        for _ in range(100):
            event = ws.receive()  # type: ignore[attr-defined]
            frame = event.get("text") if event.get("text") is not None else event.get("bytes")
            result = receiver.receive_frame(frame)
            if isinstance(result, protocol.Message):
                return result
        raise AssertionError("no whole message in 100 frames")

    with client.websocket_connect(ws_path, subprotocols=["bokeh", token]) as ws:
        assert receive(ws).msgtype == protocol.ACK
        for frame in protocol.encode(protocol.make_message(protocol.PULL_DOC_REQ)):
            if isinstance(frame, bytes):
                ws.send_bytes(frame)
            else:
                ws.send_text(frame)
        reply = receive(ws)
        assert reply.msgtype == protocol.PULL_DOC_REPLY
        return str(reply.content["doc"]["title"])


@pytest.mark.parametrize("root_path", ["", "/site"])
@pytest.mark.parametrize("kind", ["plain", "fastapi", "starlette"])
def test_every_url_follows_the_mount_and_the_root_path(
    kind: str, root_path: str, lifecycle_log: Path
) -> None:
    host, mount = host_for(kind)
    base = root_path + mount  # where app_server's URLs start, as the browser sees them
    with TestClient(host, root_path=root_path) as client:
        # the page: BokehJS from under the mount, and a token for the websocket
        page = client.get(base + "/demo")
        assert page.status_code == 200
        assert f'src="{base}/static/js/bokeh.min.js' in page.text
        token = TOKEN.search(page.text)
        assert token is not None
        assert pull_over_testclient(client, base + "/demo/ws", token.group(1)) == "app_server demo"

        # a page with its own template: its stylesheet link is relative to the page
        custom = client.get(base + "/lifecycle_app")
        assert custom.status_code == 200
        assert 'href="lifecycle_app/static/style.css"' in custom.text
        assert f'src="{base}/static/js/bokeh.min.js' in custom.text
        css = client.get(base + "/lifecycle_app/static/style.css")
        assert css.status_code == 200 and ".greeting" in css.text

        # BokehJS itself
        js = client.get(base + "/static/js/bokeh.min.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]

        # autoload.js for server_document: absolute URLs under the mount
        public = f"http://testserver{base}/demo"
        autoload = client.get(
            base + "/demo/autoload.js",
            params={"bokeh-autoload-element": "el", "bokeh-absolute-url": public},
        )
        assert autoload.status_code == 200
        assert f"http://testserver{base}/static/js/bokeh.min.js" in autoload.text

        # the index and metadata
        index = client.get(base + "/")
        assert f'href="{base}/demo"' in index.text
        assert f'href="{base}/lifecycle_app"' in index.text
        assert client.get(base + "/demo/metadata").json()["url"] == base + "/demo"
        assert client.get(base + "/healthz").status_code == 200

        # nothing answers outside the mount
        if mount:
            assert client.get(root_path + "/demo").status_code == 404
    assert events(lifecycle_log).count("server_loaded") == 1
    assert events(lifecycle_log).count("server_unloaded") == 1


@pytest.mark.parametrize("kind", ["fastapi", "starlette"])
def test_the_host_lifespan_runs_the_hooks_once(kind: str, lifecycle_log: Path) -> None:
    host, mount = host_for(kind)
    with TestClient(host) as client:
        assert events(lifecycle_log) == ["server_loaded"], "loaded at the host's startup"
        for _ in range(3):
            page = client.get(mount + "/lifecycle_app")  # its template: a session per page
            assert page.status_code == 200
    sessions = [line.split()[1] for line in events(lifecycle_log) if "session_created" in line]
    assert len(sessions) == 3
    assert events(lifecycle_log)[0] == "server_loaded"
    assert events(lifecycle_log)[-1] == "server_unloaded"
    assert sorted(events(lifecycle_log)[1:-1]) == sorted(
        [f"session_created {s}" for s in sessions] + [f"session_destroyed {s}" for s in sessions]
    )


def test_the_lifespan_helper_enters_from_the_hosts_own_lifespan(lifecycle_log: Path) -> None:
    # examples/fastapi_app.py does this; a fresh module so that its lifespan runs here
    app = runpy.run_path(str(EXAMPLES / "fastapi_app.py"))["app"]
    assert isinstance(app, FastAPI)
    with TestClient(app) as client:
        assert events(lifecycle_log) == ["server_loaded"]
        assert client.get("/dash/demo").status_code == 200
        assert app.state.started
    assert events(lifecycle_log) == ["server_loaded", "server_unloaded"]


def test_without_the_helper_a_mounted_app_starts_on_its_first_request(
    lifecycle_log: Path,
) -> None:
    dash = create_app(APPS)
    api = FastAPI()
    api.mount("/dash", dash)
    with TestClient(api) as client:
        assert events(lifecycle_log) == [], "FastAPI sends no lifespan to mounted apps"
        with ThreadPoolExecutor(4) as pool:  # concurrent first requests start it once
            statuses = list(pool.map(lambda _: client.get("/dash/demo").status_code, range(4)))
        assert statuses == [200] * 4
        assert events(lifecycle_log) == ["server_loaded"]
    # and nothing tells it when the host stops: the reason for mounted_lifespan
    assert "server_unloaded" not in events(lifecycle_log)


# -- examples/fastapi_app.py under uvicorn, in Chromium -----------------------------------------


def uvicorn_command(target: str, port: int, *args: str) -> list[str]:
    return [
        *(sys.executable, "-m", "uvicorn", target, "--app-dir", str(ROOT)),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "info", *args),
    ]


@pytest.fixture(scope="module")
def fastapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("fastapi") / "lifecycle.log"
    port = free_port()
    command = uvicorn_command("examples.fastapi_app:app", port)
    with _run(command, port, {"LIFECYCLE_LOG": str(log)}, "") as server:
        yield server


def get(url: str, **headers: str) -> tuple[int, Message, str]:
    """Status, headers (case-insensitive) and body of a GET."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_the_hosts_own_routes_and_its_guarded_routes_work_beside_the_mount(
    fastapi_server: RunningServer,
) -> None:
    url = fastapi_server.url
    status, headers, body = get(url + "/")
    assert status == 200 and 'href="http://127.0.0.1' in body and "/dash/demo" in body
    status, _, body = get(url + "/api/status")
    assert status == 200 and '"bokeh_apps":["/demo","/lifecycle_app"]' in body

    # the dependency guards the host's routes...
    assert get(url + "/api/me")[0] == 401
    assert get(url + "/api/me", **{"X-User": "ann"})[:3:2] == (200, '{"user":"ann"}')
    assert get(url + "/report")[0] == 401
    status, _, body = get(url + "/report", Cookie="user=ann")
    assert status == 200 and "Prepared for ann." in body
    assert f"{url}/dash/demo/autoload.js?bokeh-autoload-element=" in body

    # ...and the host's middleware runs for the mounted apps too
    status, headers, _ = get(url + "/dash/demo")
    assert status == 200 and headers["X-Served-By"] == "fastapi-host"


def test_a_mounted_app_renders_in_chromium_and_round_trips_a_click(
    page: Page, fastapi_server: RunningServer
) -> None:
    errors = watch_errors(page)
    page.goto(fastapi_server.url + "/dash/demo")
    page.wait_for_function(BOKEH_READY)
    expect(page).to_have_title("app_server demo")
    status = page.get_by_text(re.compile(r"^frequency = "))
    expect(status).to_have_text("frequency = 1.0, resets: 0")

    set_frequency(page, 3.5)
    expect(status).to_have_text("frequency = 3.5, resets: 0")
    page.get_by_role("button", name="Reset").click()
    expect(status).to_have_text("frequency = 1.0, resets: 1")
    assert errors.all() == []


def test_the_hosts_jinja_page_embeds_a_live_app(page: Page, fastapi_server: RunningServer) -> None:
    page.context.add_cookies([{"name": "user", "value": "ann", "url": fastapi_server.url}])
    errors = watch_errors(page)
    page.goto(fastapi_server.url + "/report")
    page.wait_for_function(BOKEH_READY)
    expect(page).to_have_title("Weekly report")
    expect(page.locator("p.user")).to_have_text("Prepared for ann.")
    expect(page.locator("canvas").first).to_be_visible()

    set_frequency(page, 2.5)
    status = page.get_by_text(re.compile(r"^frequency = "))
    expect(status).to_have_text("frequency = 2.5, resets: 0")
    page.get_by_role("button", name="Reset").click()
    expect(status).to_have_text("frequency = 1.0, resets: 1")
    assert errors.all() == []


def test_a_mounted_directory_app_with_its_own_template_and_static_files(
    page: Page, fastapi_server: RunningServer
) -> None:
    errors = watch_errors(page)
    with page.expect_response(re.compile(r"/dash/lifecycle_app/static/style\.css$")) as css:
        page.goto(fastapi_server.url + "/dash/lifecycle_app?name=bo")
    assert css.value.ok
    page.wait_for_function(BOKEH_READY)
    expect(page.locator("h1.greeting")).to_have_text("hello bo")
    page.get_by_role("button", name="Click").click()
    expect(page.get_by_text(re.compile(r"^clicked in session "))).to_be_visible()
    assert errors.all() == []


def set_frequency(page: Page, value: float) -> None:
    page.evaluate(
        "value => { Bokeh.documents[0].get_model_by_name('frequency').value = value }", value
    )


# -- uvicorn --root-path, and the example's hooks from startup to shutdown ----------------------


def pull_title(ws_url: str, token: str) -> str:
    async def pull() -> str:
        async with await BokehSocket.open(ws_url, token) as socket:
            await socket.receive_type(protocol.ACK)
            reply = await socket.request(protocol.PULL_DOC_REQ)
            return str(reply.content["doc"]["title"])

    # in a thread of its own: Playwright's loop is running in this one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, pull()).result(timeout=30)


def test_uvicorn_root_path_prefixes_every_url() -> None:
    """``uvicorn --root-path /site``: a proxy strips /site before passing requests on."""
    port = free_port()
    command = uvicorn_command("examples.asgi_app:app", port, "--root-path", "/site")
    with _run(command, port, None, "") as server:
        status, _, body = get(server.url + "/demo")
        assert status == 200 and 'src="/site/static/js/bokeh.min.js' in body
        token = TOKEN.search(body)
        assert token is not None
        ws_url = server.url.replace("http", "ws") + "/demo/ws"
        assert pull_title(ws_url, token.group(1)) == "app_server demo"
        status, _, body = get(server.url + "/")
        assert status == 200 and 'href="/site/demo"' in body
        status, _, body = get(
            server.url + "/demo/autoload.js?bokeh-autoload-element=el"
            "&bokeh-absolute-url=https://example.org/site/demo"
        )
        assert status == 200 and "https://example.org/site/static/js/bokeh.min.js" in body
        assert get(server.url + "/lifecycle_app/static/style.css")[0] == 200
        assert get(server.url + "/static/js/bokeh.min.js")[0] == 200


def test_the_examples_hooks_run_once_from_startup_to_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "lifecycle.log"
    port = free_port()
    command = uvicorn_command("examples.fastapi_app:app", port)
    with _run(command, port, {"LIFECYCLE_LOG": str(log)}, "") as server:
        assert events(log) == ["server_loaded"]
        tokens = []
        for _ in range(2):
            status, _, body = get(server.url + "/dash/lifecycle_app")
            assert status == 200
            match = TOKEN.search(body)
            assert match is not None
            tokens.append(match.group(1))
        for path in ("/dash/demo", "/dash/", "/api/status"):
            assert get(server.url + path)[0] == 200
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(15)
    ids = [get_session_id(token) for token in tokens]
    lines = events(log)
    assert lines[0] == "server_loaded" and lines[-1] == "server_unloaded"
    assert lines.count("server_loaded") == 1 and lines.count("server_unloaded") == 1
    assert sorted(lines[1:-1]) == sorted(
        [f"session_created {i}" for i in ids] + [f"session_destroyed {i}" for i in ids]
    )

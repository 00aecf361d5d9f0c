"""Behind nginx: Debian's nginx, running deploy/nginx.conf on loopback, in front of two
``app-server serve --use-xheaders --session-ids signed`` processes sharing one secret key.

Pages, autoload.js, BokehJS and websockets work through the proxy; nginx's round robin sends a
page and its websocket to different processes, and each session is still created once, where
its websocket lands. With --use-xheaders the server takes the client's scheme, address and host
from X-Forwarded-*, and checks websocket origins against the public host (nginx's), not its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bokeh.util.token import generate_secret_key
from playwright.sync_api import Browser, expect
from websockets.exceptions import InvalidStatus

from app_server import protocol
from tests.browser import launch_chromium, watch_errors
from tests.conftest import EXAMPLES, ROOT
from tests.servers import RunningServer, free_port, run_app_server
from tests.wsclient import TOKEN, BokehSocket

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONFIG = ROOT / "deploy" / "nginx.conf"
BOKEH_READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"

# an app that shows what app_server made of the websocket's request
REQUEST_APP = """
from bokeh.io import curdoc
from bokeh.models import Div

request = curdoc().session_context.request
curdoc().add_root(Div(name="seen", text=f"{request.protocol} {request.remote_ip}"))
"""

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="needs Debian's nginx")


@dataclass
class Proxy:
    url: str
    port: int
    backends: tuple[RunningServer, RunningServer]
    run_dir: Path


def render_config(listen: str, backends: list[str], run_dir: Path) -> str:
    """deploy/nginx.conf with its placeholders filled, as envsubst would."""
    text = CONFIG.read_text()
    values = {
        "LISTEN": listen,
        "BACKEND_1": backends[0],
        "BACKEND_2": backends[1],
        "RUN_DIR": str(run_dir),
    }
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    leftover = re.findall(r"\$\{[A-Z_0-9]+\}", text)
    assert not leftover, f"unfilled placeholders in deploy/nginx.conf: {leftover}"
    return text


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    apps = tmp_path_factory.mktemp("apps")
    (apps / "seen.py").write_text(REQUEST_APP)
    env = {"BOKEH_SECRET_KEY": generate_secret_key()}
    args = ["--use-xheaders", "--session-ids", "signed"]
    with (
        run_app_server(EXAMPLES / "demo.py", apps / "seen.py", args=args, env=env) as a,
        run_app_server(EXAMPLES / "demo.py", apps / "seen.py", args=args, env=env) as b,
        run_nginx([a.port, b.port]) as (port, run_dir),
    ):
        yield Proxy(f"http://127.0.0.1:{port}", port, (a, b), run_dir)


@contextlib.contextmanager
def run_nginx(backend_ports: list[int]) -> Iterator[tuple[int, Path]]:
    """deploy/nginx.conf on a free loopback port in front of two backends: the port and its
    run directory."""
    # nginx's worker runs as an unprivileged user when the tests run as root: its run directory
    # must be reachable by that user, unlike pytest's private tmp directories
    run_dir = Path(tempfile.mkdtemp(prefix="app-server-nginx-"))
    run_dir.chmod(0o755)
    port = free_port()
    backends = [f"127.0.0.1:{backend}" for backend in backend_ports]
    config = run_dir / "nginx.conf"
    config.write_text(render_config(f"127.0.0.1:{port}", backends, run_dir))
    command = [NGINX, "-p", str(run_dir), "-c", str(config), "-e", str(run_dir / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        yield port, run_dir
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read() if process.stderr else ''}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not start")


def get(url: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def token_of(url: str) -> str:
    status, body = get(url)
    assert status == 200, body
    match = TOKEN.search(body)
    assert match is not None
    return match.group(1)


def in_thread(coroutine: Any) -> Any:
    """Run a coroutine on a loop of its own (Playwright's loop runs in this module's thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


async def pull(ws_url: str, token: str, **options: Any) -> dict[str, Any]:
    async with await BokehSocket.open(ws_url, token, **options) as socket:
        await socket.receive_type(protocol.ACK)
        reply = await socket.request(protocol.PULL_DOC_REQ)
    return dict(reply.content["doc"])


def seen(doc: dict[str, Any]) -> str:
    """The text of the request app's Div."""
    return str(doc["roots"][0]["attributes"]["text"])


def metric(server: RunningServer, name: str) -> float:
    text = get(server.url + "/metrics")[1]
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def test_the_config_shipped_is_the_config_tested(proxy: Proxy) -> None:
    rendered = (proxy.run_dir / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in rendered
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in rendered
    assert f"listen 127.0.0.1:{proxy.port};" in rendered


def test_pages_static_files_and_autoload_through_nginx(proxy: Proxy) -> None:
    status, page = get(proxy.url + "/demo")
    assert status == 200 and 'src="/static/js/bokeh.min.js' in page
    status, js = get(proxy.url + "/static/js/bokeh.min.js")
    assert status == 200 and len(js) > 100_000
    status, index = get(proxy.url + "/")
    assert status == 200 and 'href="/demo"' in index and 'href="/seen"' in index

    public = f"{proxy.url}/demo"
    status, autoload = get(
        f"{public}/autoload.js?bokeh-autoload-element=el&bokeh-absolute-url={public}"
    )
    assert status == 200
    assert f"{proxy.url}/static/js/bokeh.min.js" in autoload
    assert f"127.0.0.1:{proxy.backends[0].port}" not in autoload


def test_websockets_through_nginx_create_each_session_once_where_they_land(proxy: Proxy) -> None:
    a, b = proxy.backends
    names = ("app_server_sessions_created_total", "app_server_websockets_opened_total")
    before = [[metric(server, name) for name in names] for server in (a, b)]
    tabs = 4
    for _ in range(tabs):  # round robin: the page from one process, its websocket to the other
        token = token_of(proxy.url + "/demo")
        doc = in_thread(pull(proxy.url.replace("http", "ws") + "/demo/ws", token))
        assert doc["title"] == "app_server demo"
    after = [[metric(server, name) for name in names] for server in (a, b)]
    created = [after[i][0] - before[i][0] for i in (0, 1)]
    opened = [after[i][1] - before[i][1] for i in (0, 1)]
    assert sum(opened) == tabs
    assert created == opened, "each session was created by its websocket, on its process"
    pages = [server.log().count('"GET /demo HTTP/1.1" 200') for server in (a, b)]
    assert sum(pages) >= tabs
    assert all(pages[i] + opened[i] > 0 for i in (0, 1)), "nginx used both processes"


def test_use_xheaders_takes_the_clients_scheme_and_address_from_the_proxy(proxy: Proxy) -> None:
    # through nginx: the client is 127.0.0.1 on plain http, as nginx tells the server
    token = token_of(proxy.url + "/seen")
    doc = in_thread(pull(proxy.url.replace("http", "ws") + "/seen/ws", token))
    assert seen(doc) == "http 127.0.0.1"

    # a proxy terminating TLS for a remote client (headers only: nothing leaves loopback)
    a = proxy.backends[0]
    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "dash.example.org",
    }
    token = token_of(a.url + "/seen")
    doc = in_thread(
        pull(
            a.url.replace("http", "ws") + "/seen/ws",
            token,
            additional_headers=forwarded,
            origin="https://dash.example.org",
        )
    )
    assert seen(doc) == "https 203.0.113.9"


async def refused_status(ws_url: str, token: str, origin: str) -> int | None:
    try:
        await pull(ws_url, token, origin=origin)
    except InvalidStatus as refused:
        return refused.response.status_code
    return None


def test_origins_are_checked_against_the_public_host(proxy: Proxy) -> None:
    ws_url = proxy.url.replace("http", "ws") + "/demo/ws"
    # a page of the public site (nginx's host:port) may connect
    token = token_of(proxy.url + "/demo")
    doc = in_thread(pull(ws_url, token, origin=proxy.url))
    assert doc["title"] == "app_server demo"
    # a foreign site may not, nor a page claiming to be a backend (not the public host)
    backend = proxy.backends[0].url
    for origin in ("http://evil.example", "http://127.0.0.1:1", backend):
        token = token_of(proxy.url + "/demo")
        assert in_thread(refused_status(ws_url, token, origin)) == 403, origin

    # the public host is the one X-Forwarded-Host names: without it, dash.example.org is foreign
    direct = backend.replace("http", "ws") + "/demo/ws"
    token = token_of(backend + "/demo")
    assert in_thread(refused_status(direct, token, "https://dash.example.org")) == 403
    headers = {"X-Forwarded-Host": "dash.example.org", "X-Forwarded-Proto": "https"}
    doc = in_thread(
        pull(direct, token, origin="https://dash.example.org", additional_headers=headers)
    )
    assert doc["title"] == "app_server demo"


def test_a_page_through_nginx_renders_in_chromium_and_round_trips_a_click(proxy: Proxy) -> None:
    with launch_chromium() as browser:
        click_round_trip(browser, proxy.url + "/demo")


def click_round_trip(browser: Browser, url: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(url)
        page.wait_for_function(BOKEH_READY)
        expect(page).to_have_title("app_server demo")
        status = page.get_by_text(re.compile(r"^frequency = "))
        page.evaluate("() => { Bokeh.documents[0].get_model_by_name('frequency').value = 4.5 }")
        expect(status).to_have_text("frequency = 4.5, resets: 0")
        page.get_by_role("button", name="Reset").click()
        expect(status).to_have_text("frequency = 1.0, resets: 1")
        assert errors.all() == []
    finally:
        context.close()

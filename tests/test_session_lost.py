"""A tab never sits stale silently (``--on-session-lost``; ``app_server/views/session_lost.py``).

In Chromium, against real ``app-server serve`` processes restarted on their port (or, behind
nginx, killed with SIGKILL): a tab whose token is still valid reconnects and works with a new
session, without a reload; a tab older than
``--session-token-expiration`` is refused by the new process (an expired token never opens a
session), says so, reloads once the server answers and works again; with ``notify`` it says so
and offers a Reload button. The same holds for an app embedded in another site with
``autoload.js``, and under the strict Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bokeh.embed import server_document
from bokeh.util.token import generate_secret_key, get_session_id
from playwright.sync_api import Page, expect
from starlette.testclient import TestClient
from websockets.exceptions import InvalidStatus

from app_server import create_app
from tests.browser import run_host_site, watch_errors
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, free_port, run_app_server
from tests.test_deploy_nginx import NGINX, run_nginx
from tests.wsclient import TOKEN, BokehSocket

pytestmark = pytest.mark.browser

DEMO = EXAMPLES / "demo.py"
NOTICE = "#app-server-session-lost"
WAIT = 40_000  # milliseconds a page may take to show what is expected (a loaded machine)
LIFETIME = 6  # --session-token-expiration of the tests whose tokens expire (seconds)
READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"
RELOADED = "() => window.__before_restart === undefined && " + READY[6:]


@pytest.fixture
def page(page: Page) -> Page:
    """conftest's fresh tab, patient: these pages wait for restarts and reloads."""
    page.context.set_default_timeout(WAIT)
    return page


class Restartable:
    """``app-server serve`` on one port, which a test stops (SIGTERM or SIGKILL) and starts
    again, as a crash or a deployment does."""

    def __init__(self, stack: contextlib.ExitStack, args: list[str]) -> None:
        self.stack, self.args, self.port = stack, args, free_port()
        self.server = self.start()

    def start(self) -> RunningServer:
        return self.stack.enter_context(run_app_server(DEMO, args=self.args, port=self.port))

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.server.process.send_signal(sig)
        self.server.process.wait(30)
        self.server = self.start()


@contextlib.contextmanager
def restartable(*args: str) -> Iterator[Restartable]:
    with contextlib.ExitStack() as stack:
        yield Restartable(stack, list(args))


def works(page: Page, frequency: float) -> None:
    """The session answers: a slider change runs the app's callback on the server."""
    page.evaluate(
        f"() => {{ Bokeh.documents[0].get_model_by_name('frequency').value = {frequency} }}"
    )
    status = page.get_by_text(re.compile(r"^frequency = "))
    expect(status).to_have_text(f"frequency = {frequency}, resets: 0", timeout=WAIT)


def watch_warnings(page: Page) -> list[str]:
    """The page's console warnings from now on, across reloads (the notice is logged there
    too: the page may have reloaded before a test looks at it)."""
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    return warnings


def told(warnings: list[str]) -> bool:
    return any("[app_server]" in w and "cannot be restored" in w for w in warnings)


def open_tab(page: Page, url: str) -> str:
    """Load the app, check it works, mark the page (a reload clears the mark); its token (in
    the page; an embedding page has none, autoload.js carries it)."""
    page.goto(url)
    page.wait_for_function(READY)
    works(page, 2.5)
    page.evaluate("() => { window.__before_restart = true }")
    match = TOKEN.search(page.content())
    return match.group(1) if match else ""


async def refused_status(ws_url: str, token: str) -> int | None:
    try:
        socket = await BokehSocket.open(ws_url, token)
    except InvalidStatus as refused:
        return refused.response.status_code
    await socket.close()
    return None


def test_a_tab_with_a_valid_token_reconnects_to_a_new_session_without_a_reload(
    page: Page,
) -> None:
    with restartable() as app:
        errors = watch_errors(page)
        session_id = get_session_id(open_tab(page, f"{app.server.url}/demo"))
        page.get_by_role("button", name="Reset").click()
        expect(page.get_by_text("frequency = 1.0, resets: 1")).to_be_visible(timeout=WAIT)

        app.restart()
        # BokehJS reconnects with its token: a new session of the same id, fresh state
        app.server.wait_for_log(f"created session {session_id}", timeout=40)
        expect(page.get_by_text("frequency = 1.0, resets: 0")).to_be_visible(timeout=WAIT)
        works(page, 3.5)
        assert page.evaluate("() => window.__before_restart") is True, "no reload"
        expect(page.locator(NOTICE)).to_have_count(0, timeout=WAIT)
    assert not errors.uncaught


@pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx")
def test_behind_nginx_a_tab_whose_backend_is_killed_goes_on_on_the_other(page: Page) -> None:
    env = {"BOKEH_SECRET_KEY": generate_secret_key()}
    args = ["--use-xheaders", "--session-ids", "signed"]
    with contextlib.ExitStack() as stack:
        backends = [stack.enter_context(run_app_server(DEMO, args=args, env=env)) for _ in range(2)]
        port, _ = stack.enter_context(run_nginx([b.port for b in backends]))
        session_id = get_session_id(open_tab(page, f"http://127.0.0.1:{port}/demo"))
        (holder,) = [b for b in backends if f"session {session_id}: websocket opened" in b.log()]
        (other,) = [b for b in backends if b is not holder]

        holder.process.kill()  # kill -9: the session is gone with its process
        other.wait_for_log(f"created session {session_id}", timeout=40)
        # a new session on the other backend, from the page's token: fresh state, and working
        expect(page.get_by_text("frequency = 1.0, resets: 0")).to_be_visible(timeout=WAIT)
        works(page, 3.5)
        assert page.evaluate("() => window.__before_restart") is True, "no reload"
        expect(page.locator(NOTICE)).to_have_count(0, timeout=WAIT)


def test_an_expired_tab_says_so_reloads_and_works_again_under_the_strict_csp(
    page: Page,
) -> None:
    args = ["--session-token-expiration", str(LIFETIME), "--content-security-policy", "strict"]
    with restartable(*args) as app:
        errors, warnings = watch_errors(page), watch_warnings(page)
        old_token = open_tab(page, f"{app.server.url}/demo")
        time.sleep(LIFETIME + 1)  # the page's token expires

        app.restart()
        page.wait_for_function(RELOADED)  # a fresh page, a fresh token, a new session
        assert told(warnings), "the page said why it reloaded"
        works(page, 4.5)
        expect(page.locator(NOTICE)).to_have_count(0, timeout=WAIT)
        # the old token opens no session in the new process, now or when BokehJS tried it
        ws_url = app.server.url.replace("http", "ws") + "/demo/ws"
        with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
            status = pool.submit(asyncio.run, refused_status(ws_url, old_token)).result(30)
        assert status == 403
        log = app.server.log()
        assert f"created session {get_session_id(old_token)}" not in log
    assert not [e for e in errors.console if "Content Security Policy" in e]
    assert not errors.uncaught


def test_with_notify_an_expired_tab_after_a_crash_says_so_and_offers_a_reload(
    page: Page,
) -> None:
    args = ["--session-token-expiration", str(LIFETIME), "--on-session-lost", "notify"]
    with restartable(*args) as app:
        open_tab(page, f"{app.server.url}/demo")
        time.sleep(LIFETIME + 1)

        app.restart(signal.SIGKILL)  # a crash: no 1001, the socket just breaks
        notice = page.locator(NOTICE)
        expect(notice).to_contain_text("Reload the page to start a new session", timeout=WAIT)
        assert page.evaluate("() => window.__before_restart") is True, "notify never reloads"
        notice.get_by_role("button", name="Reload").click()
        page.wait_for_function(RELOADED)
        works(page, 4.5)


def test_an_embedded_app_recovers_its_host_page(page: Page) -> None:
    with run_host_site() as site:
        host = f"127.0.0.1:{site.port}"
        args = ["--session-token-expiration", str(LIFETIME), "--allow-websocket-origin", host]
        with restartable(*args) as app:
            embed = server_document(f"{app.server.url}/demo")
            url = site.add_page("/embed", "host page", embed)
            warnings = watch_warnings(page)
            open_tab(page, url)
            time.sleep(LIFETIME + 1)

            app.restart()
            page.wait_for_function(RELOADED)
            assert told(warnings), "the page said why it reloaded"
            expect(page).to_have_title("host page", timeout=WAIT)
            works(page, 4.5)


@pytest.mark.parametrize("mode", ["reload", "notify", "none"])
def test_pages_and_autoload_carry_the_watcher_unless_none(mode: str) -> None:
    app = create_app({"/demo": DEMO}, prefix="/dash", on_session_lost=mode)
    with TestClient(app) as client:
        page = client.get("/dash/demo").text
        autoload = client.get("/dash/demo/autoload.js?bokeh-autoload-element=x").text
        script = client.get("/dash/static/app_server/session-lost.js")
        named = re.search(r'src="(/dash/static/app_server/session-lost\.js\?v=\w+)"', page)
        versioned = client.get(named.group(1)) if named else None
    tag = '<script src="/dash/static/app_server/session-lost.js?v='
    if mode == "none":
        assert tag not in page and "app-server-session-lost" not in autoload
        assert script.status_code == 404
        return
    assert page.index(tag) < page.index("</body>")
    assert versioned is not None and versioned.text == script.text
    assert "immutable" in versioned.headers["cache-control"]
    assert script.headers["cache-control"] == "no-cache"
    assert f'"mode": "{mode}"' in script.text and '"token_lifetime": 300' in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text in autoload

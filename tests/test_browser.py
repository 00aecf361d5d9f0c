"""The demo app in real Chromium: it renders, and every widget round-trips to Python.

Also embedding: another site's page that carries ``bokeh.embed.server_document`` or
``server_session`` shows a live app from app_server, when (and only when) app_server allows that
site's origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from bokeh.client import pull_session
from bokeh.core.types import ID
from bokeh.embed import server_document, server_session
from bokeh.models.widgets.markups import Div
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser import HostSite, PageErrors, run_host_site, watch_errors
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server

pytestmark = pytest.mark.browser

BOKEH_READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[HostSite]:
    """Another web app, on another port: the site that embeds app_server's demo."""
    with run_host_site() as site:
        yield site


@pytest.fixture(scope="module")
def embeddable_server(host: HostSite) -> Iterator[RunningServer]:
    """The demo on an app_server that lets the host site's pages open websockets."""
    args = ["--allow-websocket-origin", f"127.0.0.1:{host.port}"]
    with run_app_server(EXAMPLES / "demo.py", args=args) as server:
        yield server


# -- helpers -------------------------------------------------------------------------------------


def open_demo(page: Page, server: RunningServer) -> PageErrors:
    errors = watch_errors(page)
    page.goto(server.url + "/demo")
    page.wait_for_function(BOKEH_READY)
    return errors


def status(page: Page) -> Locator:
    """The Div named 'status' (rendered in a shadow root, which locators pierce)."""
    return page.get_by_text(re.compile(r"^frequency = "))


def set_model(page: Page, name: str, attr: str, value: object) -> None:
    """Set a model property in BokehJS: it goes to the server over the websocket as a drag does."""
    page.evaluate(
        "([name, attr, value]) => { Bokeh.documents[0].get_model_by_name(name)[attr] = value }",
        [name, attr, value],
    )


def model_value(page: Page, name: str, attr: str) -> object:
    return page.evaluate(
        "([name, attr]) => Bokeh.documents[0].get_model_by_name(name)[attr]", [name, attr]
    )


# -- the demo page -------------------------------------------------------------------------------


def test_the_demo_page_renders_without_errors(page: Page, demo_server: RunningServer) -> None:
    errors = open_demo(page, demo_server)

    expect(page).to_have_title("app_server demo")
    expect(page.locator("canvas").first).to_be_visible()
    expect(page.get_by_role("button", name="Reset")).to_be_visible()
    expect(status(page)).to_have_text("frequency = 1.0, resets: 0")
    assert page.evaluate("Bokeh.documents.length") == 1
    assert errors.all() == []


def test_setting_the_slider_in_the_browser_reaches_python(
    page: Page, demo_server: RunningServer
) -> None:
    errors = open_demo(page, demo_server)

    set_model(page, "frequency", "value", 2.5)

    expect(status(page)).to_have_text("frequency = 2.5, resets: 0")
    assert errors.all() == []


def test_dragging_the_slider_handle_reaches_python(page: Page, demo_server: RunningServer) -> None:
    errors = open_demo(page, demo_server)
    handle = page.locator(".noUi-handle")
    track = page.locator(".noUi-target").bounding_box()
    box = handle.bounding_box()
    assert track is not None and box is not None

    # Drag the handle past the right end of the track: the slider stops at its end, 5.0.
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] + 40, y, steps=10)
    page.mouse.up()

    # BokehJS sends the whole number 5 as a JSON integer, so Python sees 5.
    expect(status(page)).to_have_text(re.compile(r"^frequency = 5(\.0)?, resets: 0$"))
    assert errors.all() == []


def test_the_slider_keyboard_reaches_python(page: Page, demo_server: RunningServer) -> None:
    errors = open_demo(page, demo_server)

    page.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")

    expect(status(page)).to_have_text("frequency = 1.1, resets: 0")
    assert errors.all() == []


def test_clicking_reset_reaches_python(page: Page, demo_server: RunningServer) -> None:
    errors = open_demo(page, demo_server)
    set_model(page, "frequency", "value", 3.5)
    expect(status(page)).to_have_text("frequency = 3.5, resets: 0")

    page.get_by_role("button", name="Reset").click()

    expect(status(page)).to_have_text("frequency = 1.0, resets: 1")
    # The server's change of the slider came back to the browser too.
    assert model_value(page, "frequency", "value") == 1.0
    assert errors.all() == []


def test_two_pages_have_independent_sessions(browser: Browser, demo_server: RunningServer) -> None:
    # Two tabs of one browser profile, each loading the app: two sessions.
    context = browser.new_context()
    try:
        first, second = context.new_page(), context.new_page()
        open_demo(first, demo_server)
        open_demo(second, demo_server)

        set_model(first, "frequency", "value", 4.5)
        expect(status(first)).to_have_text("frequency = 4.5, resets: 0")
        second.get_by_role("button", name="Reset").click()
        expect(status(second)).to_have_text("frequency = 1.0, resets: 1")

        # Each page saw only its own changes.
        expect(status(first)).to_have_text("frequency = 4.5, resets: 0")
        assert model_value(second, "frequency", "value") == 1.0
    finally:
        context.close()


def test_the_browser_favicon_request_is_answered(page: Page, demo_server: RunningServer) -> None:
    response = page.request.get(demo_server.url + "/favicon.ico")
    assert response.ok, response.status


# -- embedding in another site -------------------------------------------------------------------


def test_server_document_in_another_site_renders_and_round_trips(
    page: Page, host: HostSite, embeddable_server: RunningServer
) -> None:
    script = server_document(embeddable_server.url + "/demo")
    url = host.add_page("/embed", "Host site", script)
    errors = watch_errors(page)

    page.goto(url)
    page.wait_for_function(BOKEH_READY)
    expect(page).to_have_title("Host site")
    expect(page.locator("canvas").first).to_be_visible()
    set_model(page, "frequency", "value", 2.5)
    expect(status(page)).to_have_text("frequency = 2.5, resets: 0")
    page.get_by_role("button", name="Reset").click()

    expect(status(page)).to_have_text("frequency = 1.0, resets: 1")
    assert errors.all() == []


def test_another_site_is_refused_without_allow_websocket_origin(
    page: Page, host: HostSite, demo_server: RunningServer
) -> None:
    # demo_server runs without --allow-websocket-origin: only its own pages may connect.
    script = server_document(demo_server.url + "/demo")
    url = host.add_page("/embed-refused", "Host site", script)
    errors = watch_errors(page)

    ws_url = demo_server.url.replace("http://", "ws://") + "/demo/ws"
    refused = f"WebSocket connection to '{ws_url}' failed"

    with page.expect_console_message(lambda message: "Could not open websocket" in message.text):
        page.goto(url)

    # Refused at the handshake with 403, as bokeh serve does; no document, no plot.
    assert any(refused in text and "403" in text for text in errors.console), errors.console
    assert page.evaluate("Bokeh.documents.length") == 0
    expect(page.locator("canvas")).to_have_count(0)


def _pull_and_customize(app_url: str, text: str) -> ID:
    """Bokeh's Python client: pull a new session, change it, and return its id."""
    with pull_session(url=app_url) as session:
        status_div = session.document.get_model_by_name("status")
        assert isinstance(status_div, Div)
        status_div.text = text
        # Runs the client's loop: the PATCH-DOC goes out before the reply is awaited.
        session.request_server_info()
        return session.id


def test_server_session_shows_a_session_customized_by_the_python_client(
    page: Page, host: HostSite, embeddable_server: RunningServer
) -> None:
    app_url = embeddable_server.url + "/demo"
    # bokeh.client runs its own event loop, so it runs outside this (Playwright's) thread.
    with ThreadPoolExecutor(1) as pool:
        session_id = pool.submit(_pull_and_customize, app_url, "customized").result(timeout=30)
    script = server_session(session_id=session_id, url=app_url)
    url = host.add_page("/embed-session", "Host site", script)
    errors = watch_errors(page)

    page.goto(url)
    page.wait_for_function(BOKEH_READY)

    expect(page.get_by_text("customized", exact=True)).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    # The page is live on that very session: its Python callbacks answer.
    set_model(page, "frequency", "value", 2.5)
    expect(status(page)).to_have_text("frequency = 2.5, resets: 0")
    assert errors.all() == []

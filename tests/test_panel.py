"""Panel apps (tests/apps/panel_*.py) under app_server, as under ``bokeh serve app.py``.

Each app renders in Chromium with no console error that ``bokeh serve`` does not also show (with
no network, both show the same failed requests for Panel's stylesheets on its CDN: Panel links
them there unless ``panel serve`` runs it), and its widgets round-trip through Python. Panel's
``pn.state.onload`` and periodic callbacks started from a widget work as under ``panel serve``
(app_server/_panel.py). One app_server per module; ``bokeh serve`` only for the comparison.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import watch_errors
from tests.conftest import ROOT, TEST_APPS
from tests.servers import RunningServer, _run, free_port, run_app_server, run_bokeh_serve

# never imported here: Panel's models would join Bokeh's registry, and every page of the tests
# that follow would load Panel's bundle
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("panel") is None, reason="needs panel"),
]

APPS = ("panel_widgets", "panel_template", "panel_tabulator", "panel_periodic", "panel_threads")
PATHS = [TEST_APPS / f"{name}.py" for name in APPS]
RENDERED = {  # what each page shows once its document has rendered
    "panel_widgets": "hello ann hello ann",
    "panel_template": "red at 2.0",
    "panel_tabulator": "total: 9",
    "panel_periodic": "Ticks",
    "panel_threads": "Work",
}
BOKEH_READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with run_app_server(*PATHS) as s:
        yield s


def open_app(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_function(BOKEH_READY, timeout=20_000)
    expect(page.get_by_text(RENDERED[name]).first).to_be_visible(timeout=20_000)


def errors_of(browser: Browser, server: RunningServer) -> dict[str, set[str]]:
    """Each app's console errors and uncaught exceptions, with the server's address removed."""
    found = {}
    for name in APPS:
        context = browser.new_context()
        page = context.new_page()
        errors = watch_errors(page)
        open_app(page, f"{server.url}/{name}", name)
        page.wait_for_load_state("networkidle")  # the stylesheets Panel's views add late
        found[name] = {e.replace(server.url, "") for e in errors.console + errors.uncaught}
        context.close()
    return found


def test_no_console_error_that_bokeh_serve_does_not_show(
    browser: Browser, server: RunningServer
) -> None:
    ours = errors_of(browser, server)
    with run_bokeh_serve(*PATHS) as bokeh:
        theirs = errors_of(browser, bokeh)
    for name in APPS:
        assert ours[name] <= theirs[name], (name, ours[name] - theirs[name])
        # only Panel's stylesheets and fonts from off this machine fail, on both servers
        local = [e for e in ours[name] if re.search(r"\(/|127\.0\.0\.1", e)]
        assert local == [], (name, local)


def test_widgets_and_bind_round_trip(page: Page, server: RunningServer) -> None:
    errors = watch_errors(page)
    open_app(page, server.url + "/panel_widgets", "panel_widgets")
    name = page.get_by_role("textbox")
    name.fill("bob")
    name.press("Enter")
    expect(page.get_by_text("hello bob hello bob")).to_be_visible()
    page.get_by_role("button", name="Shout").click()
    page.get_by_role("button", name="Shout").click()
    expect(page.get_by_text("hello bob hello bob!!")).to_be_visible()
    assert [e for e in errors.console if "127.0.0.1" in e] == errors.uncaught == []


def test_fast_list_template_round_trips(page: Page, server: RunningServer) -> None:
    open_app(page, server.url + "/panel_template", "panel_template")
    expect(page.get_by_text("Swatches").first).to_be_visible()
    page.get_by_role("combobox").select_option("blue")
    expect(page.get_by_text("blue at 2.0")).to_be_visible()


def test_tabulator_filters_from_python(page: Page, server: RunningServer) -> None:
    open_app(page, server.url + "/panel_tabulator", "panel_tabulator")
    expect(page.get_by_text("plum")).to_be_visible()
    minimum = page.locator("input.bk-input").first
    minimum.fill("3")
    minimum.press("Enter")
    expect(page.get_by_text("pear")).to_have_count(0)
    expect(page.get_by_text("plum")).to_be_visible()
    expect(page.get_by_text("total: 7")).to_be_visible()


def ticks(page: Page) -> int:
    return int(
        page.evaluate(
            "() => [...Bokeh.documents[0].all_models.values()].find(m => m.title == 'Ticks').value"
        )
    )


def test_onload_and_periodic_callbacks(page: Page, server: RunningServer) -> None:
    open_app(page, server.url + "/panel_periodic", "panel_periodic")
    expect(page.get_by_text("loaded", exact=True)).to_be_visible()  # pn.state.onload ran
    page.wait_for_function(
        "() => [...Bokeh.documents[0].all_models.values()]"
        ".some(m => m.title == 'Ticks' && m.value >= 3)",
        timeout=10_000,
    )
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"stopped at \d+"))).to_be_visible()
    stopped = int(page.get_by_text(re.compile(r"stopped at \d+")).inner_text().split()[-1])
    page.wait_for_timeout(400)
    assert ticks(page) == stopped


def test_callbacks_on_panels_threads(page: Page, server: RunningServer) -> None:
    open_app(page, server.url + "/panel_threads", "panel_threads")
    expect(page.get_by_text("loaded on a thread")).to_be_visible()
    page.get_by_role("button", name="Work").click()
    expect(page.get_by_text("worked 1 on a thread")).to_be_visible()
    page.get_by_role("button", name="Work").click()
    expect(page.get_by_text("worked 2 on a thread")).to_be_visible()


# -- mounted in FastAPI under plain uvicorn -------------------------------------------------------


@pytest.fixture(scope="module")
def fastapi_server() -> Iterator[RunningServer]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "tests.apps.panel_fastapi:api", "--app-dir", str(ROOT)),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    with _run(command, port, None, "") as s:
        yield s


def test_mounted_in_fastapi_under_uvicorn(page: Page, fastapi_server: RunningServer) -> None:
    errors = watch_errors(page)
    open_app(page, fastapi_server.url + "/panel/panel_widgets", "panel_widgets")
    name = page.get_by_role("textbox")
    name.fill("cy")
    name.press("Enter")
    expect(page.get_by_text("hello cy hello cy")).to_be_visible()
    open_app(page, fastapi_server.url + "/panel/panel_periodic", "panel_periodic")
    expect(page.get_by_text("loaded", exact=True)).to_be_visible()
    local = [e for e in errors.console if "127.0.0.1" in e]
    assert local == errors.uncaught == []

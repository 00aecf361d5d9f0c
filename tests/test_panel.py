"""Panel apps (tests/apps/panel_*.py) under app_server, as under ``bokeh serve app.py``.

Each app renders in Chromium with no console error that ``bokeh serve`` does not also show (with
no network, ``bokeh serve`` shows failed requests for Panel's stylesheets on its CDN: Panel links
them there unless ``panel serve`` runs it; app_server serves them, as ``panel serve`` does), and
its widgets round-trip through Python. Panel's ``pn.state.onload`` and periodic callbacks started
from a widget work as under ``panel serve`` (app_server/_panel.py). One app_server per module;
``bokeh serve`` only for the comparison.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from bokeh.embed import server_document
from playwright.sync_api import Browser, Page, Response, expect

from app_server._panel import dist_url  # (it does not import Panel)
from tests.browser import HostSite, block_offsite, run_host_site, watch_errors
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
# web fonts that Panel's templates name and Panel does not ship: panel serve loads them from
# there too (FastListTemplate's Open Sans)
THIRD_PARTY_FONTS = "https://fonts.googleapis.com/"


@pytest.fixture(scope="module")
def host() -> Iterator[HostSite]:
    """Another site, on another port, whose page embeds a Panel app (server_document)."""
    with run_host_site() as site:
        yield site


@pytest.fixture(scope="module")
def server(host: HostSite) -> Iterator[RunningServer]:
    args = ["--allow-websocket-origin", f"127.0.0.1:{host.port}"]
    with run_app_server(*PATHS, args=args) as s:
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


@dataclass
class Files:
    """What a page behind a firewall asked for: off-machine requests (refused), stylesheets,
    scripts and fonts that failed, and those of Panel's served here."""

    blocked: list[str]
    failed: list[str] = field(default_factory=list)
    panels: list[str] = field(default_factory=list)

    def all_here(self, page: Page) -> bool:
        """Nothing left the machine but third-party fonts, nothing failed, and Panel's
        stylesheets came from here (under /static/extensions/panel/), once its views (which add
        them late) asked for them."""
        deadline = time.monotonic() + 15
        while not any(url.split("?")[0].endswith(".css") for url in self.panels):
            assert time.monotonic() < deadline, ("no stylesheet of Panel's", self.panels)
            page.wait_for_timeout(100)
        page.wait_for_load_state("networkidle")
        assert [u for u in self.blocked if not u.startswith(THIRD_PARTY_FONTS)] == []
        assert [f for f in self.failed if THIRD_PARTY_FONTS not in f] == []
        return True


def watch_files(page: Page) -> Files:
    files = Files(block_offsite(page))

    def on_response(response: Response) -> None:
        if response.request.resource_type in ("stylesheet", "script", "font"):
            if response.status >= 400:
                files.failed.append(f"{response.status} {response.url}")
            if "/static/extensions/panel/" in response.url:
                files.panels.append(response.url)

    page.on("response", on_response)
    page.on("requestfailed", lambda request: files.failed.append(f"failed {request.url}"))
    return files


def loads_panels_files_from_here(browser: Browser, url: str, name: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        files = watch_files(page)
        open_app(page, url, name)
        assert files.all_here(page), name
    finally:
        context.close()


@pytest.mark.parametrize(
    ("path", "app", "absolute_url", "expected"),
    [
        pytest.param("/panel_widgets", "/panel_widgets", None, "/", id="page"),
        pytest.param("/panel_widgets/", "/panel_widgets", None, "/", id="page with a slash"),
        pytest.param("/pre/panel_widgets/ws", "/panel_widgets", None, "/pre/", id="websocket"),
        pytest.param("/dash/a/b/ws", "/a/b", None, "/dash/", id="nested route, mounted"),
        pytest.param("/ws", "/", None, "/", id="app at the root"),
        pytest.param("/pre/", "/", None, "/pre/", id="app at the root, prefixed"),
        pytest.param(
            "/panel_widgets/ws",
            "/panel_widgets",
            "http://127.0.0.1:5006/pre/panel_widgets",
            "http://127.0.0.1:5006/pre/",
            id="autoload.js",
        ),
        pytest.param("/other/ws", "/panel_widgets", None, None, id="not this app's"),
    ],
)
def test_dist_url_is_this_servers_panel_directory(
    path: str, app: str, absolute_url: str | None, expected: str | None
) -> None:
    url = dist_url(path, app, absolute_url)
    assert url == (None if expected is None else expected + "static/extensions/panel/")


def test_panels_stylesheets_come_from_this_server(browser: Browser, server: RunningServer) -> None:
    for name in APPS:
        for _ in range(2):  # the app's first page (made from its document), and the next
            loads_panels_files_from_here(browser, f"{server.url}/{name}", name)


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


def test_embedded_in_another_sites_page_renders_and_round_trips(
    browser: Browser, host: HostSite, server: RunningServer
) -> None:
    """``bokeh.embed.server_document`` (autoload.js) in a page of another origin: the app's
    stylesheets and scripts come from the app's server, the websocket too."""
    url = host.add_page("/embed", "Host site", server_document(server.url + "/panel_widgets"))
    context = browser.new_context()
    try:
        page = context.new_page()
        files = watch_files(page)
        errors = watch_errors(page)
        page.goto(url)
        page.wait_for_function(BOKEH_READY, timeout=20_000)
        expect(page).to_have_title("Host site")
        expect(page.get_by_text("hello ann hello ann")).to_be_visible(timeout=20_000)
        name = page.get_by_role("textbox")
        name.fill("dee")
        name.press("Enter")
        expect(page.get_by_text("hello dee hello dee")).to_be_visible()
        page.get_by_role("button", name="Shout").click()
        expect(page.get_by_text("hello dee hello dee!")).to_be_visible()
        assert files.all_here(page)
        assert errors.console == errors.uncaught == []
    finally:
        context.close()


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


def test_mounted_panels_stylesheets_come_from_the_mount(
    browser: Browser, fastapi_server: RunningServer
) -> None:
    for name in ("panel_widgets", "panel_periodic"):  # what tests/apps/panel_fastapi.py mounts
        loads_panels_files_from_here(browser, f"{fastapi_server.url}/panel/{name}", name)

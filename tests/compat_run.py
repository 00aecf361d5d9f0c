"""``make compat``: each app of tests/compat.py under each server, in Chromium behind a firewall;
records the cells in tests/compat_results.json and writes COMPATIBILITY.md.

Not collected by the regular suite (the file name does not start with ``test_``): run it as
``pytest tests/compat_run.py`` (about two minutes a leg). Each app runs alone on its own
server, as ``bokeh serve app.py`` would run it. Besides recording, it checks what the issue asks
of app_server: it renders and round-trips every app ``bokeh serve`` does, with no console error
``bokeh serve`` does not also show.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pytest
from bokeh.embed import server_document
from playwright.sync_api import Browser, Error, Page, expect

from tests.browser import HostSite, block_offsite, run_host_site, watch_errors
from tests.compat import (
    APPS,
    ROOT,
    Cell,
    CompatApp,
    leg,
    load_results,
    normalized,
    save_results,
    servers_of,
    write_table,
)
from tests.conftest import TEST_APPS
from tests.servers import RunningServer, _run, free_port, run_app_server, run_bokeh_serve
from tests.test_csp import run_cdn

pytestmark = pytest.mark.browser

BOKEH_READY = "() => window.Bokeh !== undefined && Bokeh.documents.length == 1"
CELLS: dict[str, dict[str, Cell]] = {}


@pytest.fixture(scope="module")
def cdn() -> Iterator[str]:
    with run_cdn() as (url, _):
        yield url


@pytest.fixture(scope="module")
def host() -> Iterator[HostSite]:
    with run_host_site() as site:
        yield site


@pytest.fixture(scope="module", autouse=True)
def record() -> Iterator[None]:
    """Once every cell is in: the results file and COMPATIBILITY.md."""
    yield
    if len(CELLS) == len(APPS) and all(len(c) == len(servers_of(a)) for a, c in _by_app()):
        save_results(leg(), CELLS)
        write_table(load_results())


def _by_app() -> list[tuple[CompatApp, dict[str, Cell]]]:
    return [(app, CELLS.get(app.name, {})) for app in APPS]


@contextlib.contextmanager
def serve(server: str, app: CompatApp, cdn: str, host: HostSite) -> Iterator[RunningServer]:
    env = {
        "PYTHONPATH": str(TEST_APPS / "extensions"),  # ext_app's package, installed
        "TS_MODEL_SCRIPT": f"{cdn}/greeting.js",
    }
    path = ROOT / app.path
    allow = ["--allow-websocket-origin", f"127.0.0.1:{host.port}"] if app.embed else []
    if server == "app_server":
        with run_app_server(path, env=env, args=allow) as running:
            yield running
    elif server == "bokeh serve":
        with run_bokeh_serve(path, env=env, args=allow) as running:
            yield running
    else:
        port = free_port()
        command = [sys.executable, "-m", "panel", "serve", str(path), "--port", str(port), *allow]
        with _run(command, port, env, "") as running:
            yield running


def visit(page: Page, app: CompatApp, server: RunningServer, cdn: str, host: HostSite) -> Cell:
    """Open the app as a user would, then use its widget; what worked, and the errors."""
    url = server.url + app.route + app.query.format(cdn=cdn)
    if app.embed:
        url = host.add_page(f"/embed{server.port}", "Host site", server_document(url))
    errors = watch_errors(page)
    block_offsite(page)
    cell = Cell(renders=False, round_trip=None if app.round_trip is None else False)
    try:
        page.goto(url)
        page.wait_for_function(BOKEH_READY, timeout=30_000)
        expect(page.get_by_text(app.shows).first).to_be_visible(timeout=20_000)
        cell.renders = True
        if app.round_trip is not None:
            app.round_trip(page)
            cell.round_trip = True
    except (AssertionError, Error):
        pass  # what did not work is in the cell
    with contextlib.suppress(Error):
        page.wait_for_load_state("networkidle", timeout=10_000)
    addresses = {server.url: "<server>", cdn: "<cdn>", host.url: "<host site>"}
    cell.errors = sorted({normalized(e, addresses) for e in errors.console + errors.uncaught})
    return cell


@pytest.mark.parametrize("app", APPS, ids=[app.name for app in APPS])
def test_app_under_each_server(browser: Browser, app: CompatApp, cdn: str, host: HostSite) -> None:
    cells = CELLS.setdefault(app.name, {})
    for server in servers_of(app):
        with serve(server, app, cdn, host) as running:
            context = browser.new_context()
            try:
                cells[server] = visit(context.new_page(), app, running, cdn, host)
            finally:
                context.close()
    ours, bokehs = cells["app_server"], cells["bokeh serve"]
    assert ours.at_least_as_good_as(bokehs), (app.name, ours, bokehs)

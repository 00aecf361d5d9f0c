"""The seed's example apps in Chromium: threads, unlocked callbacks, a directory app's lifecycle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import watch_errors
from tests.conftest import EXAMPLES
from tests.servers import RunningServer, run_app_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def examples_server() -> Iterator[RunningServer]:
    with run_app_server(EXAMPLES / "thread_updates.py", EXAMPLES / "unlocked_callbacks.py") as s:
        yield s


def streamed_points(page: Page) -> int:
    return int(
        page.evaluate(
            "() => Bokeh.documents[0].all_models.values().find("
            "m => m.type == 'ColumnDataSource').data.x.length"
        )
    )


def test_a_threads_updates_reach_the_browser(page: Page, examples_server: RunningServer) -> None:
    errors = watch_errors(page)
    page.goto(examples_server.url + "/thread_updates")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length == 1")
    page.wait_for_function(
        "() => Bokeh.documents[0].all_models.values().find("
        "m => m.type == 'ColumnDataSource').data.x.length > 5",
        timeout=10_000,
    )
    assert errors.all() == []


def test_locked_updates_keep_their_rate_while_the_unlocked_one_waits(
    page: Page, examples_server: RunningServer
) -> None:
    errors = watch_errors(page)
    page.goto(examples_server.url + "/unlocked_callbacks")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length == 1")
    page.wait_for_timeout(3_200)
    colors = page.evaluate(
        "() => Bokeh.documents[0].all_models.values().find("
        "m => m.type == 'ColumnDataSource').data.color"
    )
    assert colors.count("red") >= 10, colors  # every 200 ms under the lock
    assert colors.count("blue") >= 2, colors  # the first point, and the unlocked task's result
    assert errors.all() == []


def test_closing_the_tab_destroys_the_session_after_the_lifetime(
    browser: Browser, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    args = ["--disconnected-session-lifetime", "500"]
    with run_app_server(
        EXAMPLES / "lifecycle_app", args=args, env={"LIFECYCLE_LOG": str(log)}
    ) as s:
        context = browser.new_context()
        page = context.new_page()
        errors = watch_errors(page)
        page.goto(s.url + "/lifecycle_app?N=3&name=ann")
        expect(page.locator("h1.greeting")).to_have_text("hello ann")  # the app's template
        expect(page.get_by_text("points: 3, greeting: hello ann")).to_be_visible()
        page.get_by_role("button", name="Click").click()
        expect(page.get_by_text("clicked in session")).to_be_visible()
        assert errors.all() == []
        created = [e for e in log.read_text().splitlines() if e.startswith("session_created")]
        assert len(created) == 1

        context.close()  # the tab closes
        session_id = created[0].split()[1]
        deadline = time.monotonic() + 10
        while f"session_destroyed {session_id}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

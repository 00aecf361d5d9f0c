from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import RunningServer, run_app_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TEST_APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="session")
def demo_server() -> Iterator[RunningServer]:
    """``app-server serve examples/demo.py`` on a loopback port, shared by the session's tests."""
    with run_app_server(EXAMPLES / "demo.py") as server:
        yield server


if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium; module scope, not session scope: see tests/browser.py."""
    from tests.browser import launch_chromium

    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile and tab for each test."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()

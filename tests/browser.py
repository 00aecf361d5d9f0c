"""Helpers for the browser tests: Debian's Chromium under Playwright, and a host web app.

Playwright's sync API keeps its own event loop marked as running in the calling thread for as
long as it lives, so it must not outlive the module that uses it: an async test that ran while it
was alive could not start pytest-asyncio's loop. ``launch_chromium`` is therefore meant for a
module-scoped fixture.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import Route as BrowserRoute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.servers import free_port

__all__ = [
    "HostSite",
    "PageErrors",
    "block_offsite",
    "launch_chromium",
    "run_host_site",
    "watch_errors",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextlib.contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Headless Debian Chromium (never a browser downloaded by Playwright)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageErrors:
    """What went wrong in a page: console errors, uncaught exceptions, traffic off loopback."""

    console: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.console + self.uncaught + self.offsite


def watch_errors(page: Page) -> PageErrors:
    """Collect the page's console errors, page errors and requests off 127.0.0.1 from now on."""
    errors = PageErrors()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)

    def on_url(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1":
            errors.offsite.append(url)

    page.on("pageerror", lambda error: errors.uncaught.append(str(error)))
    page.on("request", lambda request: on_url(request.url))
    page.on("websocket", lambda websocket: on_url(websocket.url))
    return errors


def block_offsite(page: Page) -> list[str]:
    """Refuse the page every request off 127.0.0.1, as a firewall would; the list of them fills
    as the page asks."""
    blocked: list[str] = []

    def route(route: BrowserRoute) -> None:
        url = route.request.url
        if urlsplit(url).hostname in ("127.0.0.1", None):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    page.route("**/*", route)
    return blocked


@dataclass
class HostSite:
    """Another web app on its own loopback port, serving the HTML pages a test gives it."""

    url: str
    port: int
    pages: dict[str, str] = field(default_factory=dict)

    def add_page(self, path: str, title: str, body: str) -> str:
        self.pages[path] = (
            f"<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
            f"<title>{title}</title></head>"
            f"<body><h1>{title}</h1>{body}</body></html>"
        )
        return self.url + path


@contextlib.contextmanager
def run_host_site() -> Iterator[HostSite]:
    """A tiny Starlette app under uvicorn in a background thread, on 127.0.0.1."""
    port = free_port()
    site = HostSite(url=f"http://127.0.0.1:{port}", port=port)

    async def serve_page(request: Request) -> Response:
        html = site.pages.get(request.url.path)
        if html is None:
            return PlainTextResponse("not found", status_code=404)
        return HTMLResponse(html)

    app = Starlette(routes=[Route("/{path:path}", serve_page)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="host-site", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the host site did not start")
        time.sleep(0.02)
    try:
        yield site
    finally:
        server.should_exit = True
        thread.join(10)

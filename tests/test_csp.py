"""The default Content-Security-Policy breaks nothing an app loads from elsewhere, as under
``bokeh serve``; the strict one blocks it, and says so in the console."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from playwright.sync_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.browser import watch_errors
from tests.servers import free_port, run_app_server

pytestmark = pytest.mark.browser

APP = "tests/apps/cdn_assets.py"
ASSETS = {
    "/style.css": (
        "@font-face { font-family: cdnfont; src: url(font.woff2); }\n"
        "body { font-family: cdnfont, sans-serif; background: rgb(1, 2, 3); }",
        "text/css",
    ),
    "/lib.js": ("window.cdnScriptRan = true;", "application/javascript"),
    "/frame.html": ("<!doctype html><title>frame</title><p>framed</p>", "text/html"),
    "/font.woff2": ("", "font/woff2"),
    # tests/apps/ts_model.py's script from another origin (tests/compat_run.py)
    "/greeting.js": ("window.from_other_origin = 'other origin';", "application/javascript"),
}


@contextlib.contextmanager
def run_cdn() -> Iterator[tuple[str, list[str]]]:
    """Another origin (its own loopback port) standing in for a CDN; the paths it served."""
    served: list[str] = []

    async def asset(request: Request) -> Response:
        served.append(request.url.path)
        body, media_type = ASSETS.get(request.url.path, ("", "text/plain"))
        headers = {"Access-Control-Allow-Origin": "*"}
        return Response(body, media_type=media_type, headers=headers)

    port = free_port()
    app = Starlette(routes=[Route("/{path:path}", asset)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the CDN did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.should_exit = True
        thread.join(10)


def load(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length == 1", timeout=15_000)
    page.wait_for_load_state("load")


def test_by_default_an_app_loads_styles_scripts_fonts_and_iframes_from_elsewhere(
    page: Page,
) -> None:
    with run_cdn() as (cdn, served), run_app_server(APP) as server:
        errors = watch_errors(page)
        load(page, f"{server.url}/cdn_assets?cdn={cdn}")
        assert page.evaluate("() => window.cdnScriptRan") is True
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(1, 2, 3)"
        page.wait_for_function("() => document.getElementById('frame').contentWindow.length >= 0")
        assert {"/style.css", "/lib.js", "/frame.html"} <= set(served)
        assert errors.all() == []


def test_the_strict_policy_blocks_them_and_the_console_says_so(page: Page) -> None:
    args = ["--content-security-policy", "strict"]
    with run_cdn() as (cdn, served), run_app_server(APP, args=args) as server:
        errors = watch_errors(page)
        load(page, f"{server.url}/cdn_assets?cdn={cdn}")
        assert page.evaluate("() => window.cdnScriptRan") is None
        assert not {"/style.css", "/lib.js"} & set(served)
        assert any("Content Security Policy" in line for line in errors.console), errors.console

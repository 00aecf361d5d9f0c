"""Bokeh extensions: pre-built extension packages under /static/extensions/<name>/ (in-process,
and in Chromium), TypeScript ``__implementation__`` models in Chromium, and the page naming a
model whose TypeScript does not compile.

The extension package is a fixture, ``tests/apps/extensions/app_server_test_ext``: no package on
PyPI fits (``ipywidgets_bokeh`` needs ipykernel and is built for one BokehJS; Panel's tests are
elsewhere). Its bundle is hand-written in the plugin format Bokeh's compiler emits, and loads a
stylesheet beside itself, as Panel's bundle does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import importlib
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from bokeh.core.has_props import _default_resolver
from bokeh.document import Document
from bokeh.embed import bundle
from bokeh.models import Div
from bokeh.util.token import generate_jwt_token, generate_session_id
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from app_server import create_app
from app_server.app import mounted_lifespan
from app_server.views.static import ExtensionStaticFiles, installed_extension_dir
from tests.browser import run_host_site, watch_errors
from tests.conftest import TEST_APPS
from tests.servers import RunningServer, run_app_server
from tests.wsclient import BokehSocket

EXTENSIONS = TEST_APPS / "extensions"
NAME = "app_server_test_ext"
DIST = EXTENSIONS / NAME / "dist"
BUNDLE = f"{NAME}/{NAME}.min.js"
SCRIPT = re.compile(r'<script src="([^"]*/static/extensions/[^"]*)"')


def hello(doc: Document) -> None:
    doc.add_root(Div(text="hello"))


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extension package installed (findable), not imported."""
    monkeypatch.syspath_prepend(str(EXTENSIONS))
    monkeypatch.delitem(bundle.extension_dirs, NAME, raising=False)


@pytest.fixture
def imported(on_path: None) -> Iterator[ModuleType]:
    """The extension package imported, as an app would: pages name its bundle until the end
    of the test (Bokeh keeps model classes in a process-wide registry)."""
    module = importlib.import_module(NAME)
    try:
        yield module
    finally:
        _default_resolver.remove(module.Hello)
        sys.modules.pop(NAME, None)
        bundle.extension_dirs.pop(NAME, None)


def host_for(kind: str, **options: object) -> tuple[ASGIApp, str]:
    dash = create_app({"/hello": hello}, **options)
    if kind == "fastapi":
        api = FastAPI(lifespan=mounted_lifespan(dash))
        api.mount("/dash", dash)
        return api, "/dash"
    return dash, str(options.get("prefix", ""))


# -- in-process ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "prefix", "root_path"),
    [("plain", "", ""), ("plain", "/pre", ""), ("plain", "", "/site"), ("fastapi", "", "/site")],
)
def test_a_page_names_the_extension_bundle_and_it_is_served(
    imported: ModuleType, kind: str, prefix: str, root_path: str
) -> None:
    host, mount = host_for(kind, **({"prefix": prefix} if prefix else {}))
    base = root_path + mount
    with TestClient(host, root_path=root_path) as client:
        page = client.get(base + "/hello")
        assert page.status_code == 200
        scripts = SCRIPT.findall(page.text)
        assert len(scripts) == 1
        assert scripts[0].startswith(f"{base}/static/extensions/{BUNDLE}?v=")
        js = client.get(scripts[0])
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert js.content == (DIST / f"{NAME}.min.js").read_bytes()
        # what the bundle loads, beside itself: revalidated (no version in its URL)
        css = client.get(f"{base}/static/extensions/{NAME}/css/hello.css")
        assert css.status_code == 200 and ".hello" in css.text
        assert css.headers["cache-control"] == "no-cache"
        etag = css.headers["etag"]
        again = client.get(
            f"{base}/static/extensions/{NAME}/css/hello.css", headers={"if-none-match": etag}
        )
        assert again.status_code == 304
        # autoload.js (server_document): absolute URLs under the mount
        public = f"http://testserver{base}/hello"
        autoload = client.get(
            base + "/hello/autoload.js",
            params={"bokeh-autoload-element": "el", "bokeh-absolute-url": public},
        )
        assert f'"http://testserver{base}/static/extensions/{BUNDLE}?v=' in autoload.text


def test_an_installed_extension_is_served_before_any_page_names_it(on_path: None) -> None:
    """A worker that has made no page yet (or a page cached across a restart) still serves it."""
    assert NAME not in bundle.extension_dirs and NAME not in sys.modules
    with TestClient(create_app({"/hello": hello})) as client:
        assert client.get(f"/static/extensions/{BUNDLE}").status_code == 200
    assert NAME not in sys.modules  # found, not imported
    assert installed_extension_dir(NAME) == DIST


def test_panels_bundle_and_the_files_it_loads_are_served() -> None:
    """Panel (in the test extra) is the extension most apps use; found, not imported, here."""
    imported = "panel" in sys.modules
    with TestClient(create_app({"/hello": hello}, prefix="/pre")) as client:
        for path in (
            "panel.min.js?v=1",
            "bundled/reactiveesm/es-module-shims@%5E1.10.0/dist/es-module-shims.min.js",
            "css/loading.css",
        ):
            response = client.get(f"/pre/static/extensions/panel/{path}")
            assert response.status_code == 200, path
    assert ("panel" in sys.modules) == imported


def test_extension_dirs_are_read_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "late.js").write_text("// late")
    with TestClient(create_app({"/hello": hello})) as client:
        assert client.get("/static/extensions/late_ext/late.js").status_code == 404
        monkeypatch.setitem(bundle.extension_dirs, "late_ext", tmp_path)
        response = client.get("/static/extensions/late_ext/late.js")
        assert response.status_code == 200 and response.text == "// late"


@pytest.mark.parametrize(
    "path",
    [
        f"/static/extensions/{NAME}/../__init__.py",  # the package, outside its dist/
        f"/static/extensions/{NAME}/%2e%2e/package.json",
        f"/static/extensions/{NAME}/%2e%2e/%2e%2e/%2e%2e/conftest.py",
        f"/static/extensions/{NAME}/..%2f..%2f..%2fconftest.py",
        f"/static/extensions/{NAME}//etc/passwd",
        f"/static/extensions/{NAME}/",
        f"/static/extensions/{NAME}",
        f"/static/extensions/{NAME}/nope.js",
        "/static/extensions/../../../../etc/passwd",
        "/static/extensions/%2e%2e/%2e%2e/etc/passwd",
        "/static/extensions/json/__init__.py",  # a package, but no Bokeh extension
        "/static/extensions/os.path/x",
        "/static/extensions/linked/outside.txt",  # a symlink out of the extension's directory
        "/static/extensions/linked/sub/../../outside.txt",
    ],
)
def test_extension_files_stay_inside_each_extensions_directory(
    on_path: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    served = tmp_path / "served"
    (served / "sub").mkdir(parents=True)
    (served / "outside.txt").symlink_to(tmp_path / "outside.txt")
    monkeypatch.setitem(bundle.extension_dirs, "linked", served)
    (served / "sub" / "inside.txt").write_text("inside")
    with TestClient(create_app({"/hello": hello})) as client:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text
        # the controls: the server sees the dots (and resolves them), the directory is served
        inside = client.get("/static/extensions/linked/sub/%2e%2e/sub/inside.txt")
        assert inside.status_code == 200 and inside.text == "inside"
        assert client.get(f"/static/extensions/{NAME}/css/%2e%2e/{NAME}.min.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"{NAME}/../__init__.py",
        f"{NAME}/../../../conftest.py",
        f"{NAME}//etc/passwd",
        "../../../etc/passwd",
        "/etc/passwd",
        f"{NAME}/",
        f"{NAME}",
    ],
)
def test_unnormalized_paths_find_nothing(on_path: None, path: str) -> None:
    """Starlette normalizes the path first; the lookup refuses escapes even without that."""
    assert ExtensionStaticFiles().lookup_path(path) == ("", None)


# -- in Chromium, and against app-server serve -------------------------------------------------


@pytest.fixture(scope="module")
def extension_server() -> Iterator[RunningServer]:
    env = {"PYTHONPATH": str(EXTENSIONS)}
    with run_app_server(TEST_APPS / "ext_app.py", env=env, prefix="/pre") as server:
        yield server


@pytest.mark.parametrize(
    "path",
    [
        f"/pre/static/extensions/{NAME}/../../../../../../etc/passwd",
        f"/pre/static/extensions/{NAME}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/pre/static/extensions/{NAME}/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"/pre/static/extensions/{NAME}/../__init__.py",
    ],
)
def test_raw_paths_stay_inside_under_uvicorn(extension_server: RunningServer, path: str) -> None:
    """What a client sends as is (no client-side normalization), through uvicorn."""
    connection = http.client.HTTPConnection("127.0.0.1", extension_server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 404
        assert b"root:" not in response.read()
    finally:
        connection.close()


@pytest.mark.browser
def test_an_extension_packages_model_renders(page: Page, extension_server: RunningServer) -> None:
    errors = watch_errors(page)
    loaded: list[str] = []
    page.on("response", lambda r: loaded.append(f"{r.status} {r.url.split('?')[0]}"))
    page.goto(extension_server.url + "/ext_app")
    hello = page.locator(".hello")
    expect(hello).to_have_text("hello from an extension", timeout=15_000)
    expect(hello).to_have_css("color", "rgb(0, 128, 0)")  # the stylesheet beside the bundle
    ext = f"{extension_server.url}/static/extensions/{NAME}"
    assert f"200 {ext}/{NAME}.min.js" in loaded
    assert f"200 {ext}/css/hello.css" in loaded
    assert errors.all() == []


@pytest.mark.browser
def test_a_typescript_model_renders_with_a_script_from_another_origin(browser: Browser) -> None:
    """Also once the sessions that made the model's classes are discarded (their app modules
    gone from sys.modules, their last class still registered): the next page renders too."""
    with run_host_site() as site:
        site.pages["/lib.js"] = "window.from_other_origin = 'other origin';"
        env = {"TS_MODEL_SCRIPT": site.url + "/lib.js"}
        args = ["--disconnected-session-lifetime", "500", "--check-unused-sessions", "100"]
        with run_app_server(TEST_APPS / "ts_model.py", env=env, args=args) as server:
            greeting = "hello from TypeScript (other origin)"
            # the first page's session runs the app code as the page is made; the others',
            # when their websocket connects
            for discarded in range(3):
                context = browser.new_context()
                try:
                    tab = context.new_page()
                    errors = watch_errors(tab)
                    tab.goto(server.url + "/ts_model")
                    expect(tab.locator(".greeting")).to_have_text(greeting, timeout=30_000)
                    assert errors.all() == []
                finally:
                    context.close()
                deadline = time.monotonic() + 20
                while server.log().count("discarded session") <= discarded:
                    assert time.monotonic() < deadline, "the session was not discarded"
                    time.sleep(0.05)
    assert "Traceback" not in server.log()


def test_the_first_page_compiles_typescript_off_the_event_loop() -> None:
    """Node takes seconds; meanwhile the server answers (here /healthz) as if idle."""
    env = {"TS_MODEL_SCRIPT": "/no-such-script.js"}
    with run_app_server(TEST_APPS / "ts_model.py", env=env) as server:
        page_took: list[float] = []

        def fetch_page() -> None:
            start = time.monotonic()
            with urllib.request.urlopen(server.url + "/ts_model", timeout=60) as response:
                assert response.status == 200
            page_took.append(time.monotonic() - start)

        fetching = threading.Thread(target=fetch_page)
        fetching.start()
        slowest = 0.0
        while fetching.is_alive():
            start = time.monotonic()
            with urllib.request.urlopen(server.url + "/healthz", timeout=60):
                slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.02)
        fetching.join()
        assert page_took, "the page failed"
        assert slowest < page_took[0] / 2, (slowest, page_took[0])


def test_a_model_that_does_not_compile_gets_a_page_naming_it() -> None:
    with run_app_server(TEST_APPS / "ts_broken.py") as server:
        for _ in range(2):  # the server goes on: the second page fails as the first did
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(server.url + "/ts_broken", timeout=60)
            assert caught.value.code == 500
            body = caught.value.read().decode()
            assert "Bokeh could not compile the TypeScript of model Broken" in body
            assert f"{TEST_APPS / 'ts_broken.py'}:Broken.ts" in body
            assert "Cannot find name &#x27;undefined_children_name&#x27;" in body
            assert "\x1b[" not in body
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as health:
            assert health.status == 200
    assert "SystemExit" not in server.log()
    assert "cannot compile the TypeScript of model Broken" in server.log()


def test_a_compile_failure_is_answered_again_without_node_until_the_source_changes(
    tmp_path: Path,
) -> None:
    """Node runs through a wrapper that counts its compilations. The pages after a failed one
    get the same page without compiling; a new session with fixed TypeScript compiles again."""
    runs = tmp_path / "node-runs"
    node = tmp_path / "node"
    node.write_text(f'#!/bin/sh\necho "$*" >> {runs}\nexec /usr/bin/node "$@"\n')
    node.chmod(0o755)
    source = tmp_path / "broken.ts"
    broken = (TEST_APPS / "ts_broken.py").read_text().split('"""')[3]  # its IMPLEMENTATION
    assert "undefined_children_name" in broken
    source.write_text(broken)
    env = {"BOKEH_NODEJS_PATH": str(node), "TS_BROKEN_SOURCE": str(source)}

    def compilations() -> int:
        return runs.read_text().count("compiler.js") if runs.exists() else 0

    def failed_page() -> str:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.url + "/ts_broken", timeout=60)
        assert caught.value.code == 500
        return caught.value.read().decode()

    with run_app_server(TEST_APPS / "ts_broken.py", env=env) as server:
        first = failed_page()
        assert "Cannot find name &#x27;undefined_children_name&#x27;" in first
        compiled = compilations()
        assert compiled > 0
        assert failed_page() == first
        assert failed_page() == first
        assert compilations() == compiled
        # fixed: the next session runs the app code with the new source, the next page compiles
        source.write_text(broken.replace("undefined_children_name", "[]"))
        open_a_session(server.url.replace("http://", "ws://") + "/ts_broken/ws")
        with urllib.request.urlopen(server.url + "/ts_broken", timeout=60) as fixed:
            assert fixed.status == 200
        assert compilations() > compiled
        compiled = compilations()
        with urllib.request.urlopen(server.url + "/ts_broken", timeout=60) as again:
            assert again.status == 200
        assert compilations() == compiled
    assert "SystemExit" not in server.log()


def open_a_session(ws_url: str) -> None:
    """A session of the app (its code runs), as a tab whose websocket connects (in a thread of
    its own: Playwright's tests leave an event loop running in this one)."""

    async def pull() -> None:
        token = generate_jwt_token(generate_session_id())
        async with await BokehSocket.open(ws_url, token) as socket:
            reply = await socket.request("PULL-DOC-REQ")
            assert reply.msgtype == "PULL-DOC-REPLY"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, pull()).result(timeout=60)

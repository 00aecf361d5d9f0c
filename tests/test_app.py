"""create_app: routes, pages, static files, autoload and metadata, in-process with TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.core.has_props import _default_resolver
from bokeh.document import Document
from bokeh.io import curdoc
from bokeh.models import Div
from jinja2 import Template
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from app_server import ConfigurationError, create_app
from tests.conftest import EXAMPLES, TEST_APPS


def hello(doc: Document) -> None:
    doc.add_root(Div(text="hello", name="div"))
    doc.title = "hello app"


def echo_arguments(doc: Document) -> None:
    request = curdoc().session_context.request
    doc.add_root(Div(text=repr(request.arguments), name="args"))
    doc.title = repr(request.arguments)


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app({"/hello": hello, "/args": echo_arguments})
    with TestClient(app) as client:
        yield client


def token_in(html: str) -> str:
    match = re.search(r'"token":\s*"([^"]+)"', html)
    assert match
    return match.group(1)


def test_an_app_page_is_html_with_a_token(client: TestClient) -> None:
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert token_in(response.text)
    assert 'style="display: contents;"' in response.text, "the element BokehJS fills"


def test_the_page_loads_bokehjs_from_this_server_with_versioned_urls(client: TestClient) -> None:
    html = client.get("/hello").text
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts and all(s.startswith("/static/") and "?v=" in s for s in scripts)
    response = client.get(scripts[0])
    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]


def test_a_model_class_defined_later_brings_its_styles_to_the_next_page(client: TestClient) -> None:
    assert "late-model.css" not in client.get("/hello").text

    class LateStyled(Div):
        __css__ = "http://127.0.0.1:9/late-model.css"

    try:
        assert "late-model.css" in client.get("/hello").text
    finally:  # Bokeh keeps its classes in a process-wide registry (private, 3.9 and 3.10)
        _default_resolver.remove(LateStyled)
    assert "late-model.css" not in client.get("/hello").text


def test_unversioned_static_files_must_be_revalidated(client: TestClient) -> None:
    response = client.get("/static/js/bokeh.min.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/js/nope.js"],
)
def test_static_files_stay_inside_the_static_directory(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_request_arguments_reach_the_app_as_lists_of_bytes(client: TestClient) -> None:
    token = token_in(client.get("/args?bokeh-session-id=with-args&N=10&name=a&name=b").text)
    with client.websocket_connect("/args/ws", subprotocols=["bokeh", token]):
        html = client.get("/args?bokeh-session-id=with-args").text
    title = re.search(r"<title>(.*)</title>", html)
    assert title and unescape(title.group(1)) == "{'N': [b'10'], 'name': [b'a', b'b']}"


def test_a_sessions_request_is_decoded_from_its_token_when_the_app_first_reads_it(
    client: TestClient,
) -> None:
    token = token_in(client.get("/hello?N=10").text)
    with client.websocket_connect("/hello/ws", subprotocols=["bokeh", token]):
        app = client.app
        assert isinstance(app, Starlette)
        (context,) = app.state.server.contexts["/hello"].session_contexts
        request = context.request
        assert not {"arguments", "cookies", "headers"} & set(vars(request))  # not read yet
        assert request.arguments == {"N": [b"10"]}
        assert request.headers["Host"] == "testserver"
        assert request.arguments is request.arguments  # decoded once


def test_the_index_lists_every_app(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert 'href="/hello"' in response.text and 'href="/args"' in response.text


def test_a_single_app_index_redirects_to_it() -> None:
    with TestClient(create_app({"/hello": hello})) as client:
        response = client.get("/", follow_redirects=False)
        assert response.status_code in (302, 307)
        assert response.headers["location"] == "/hello"


def test_the_index_can_be_disabled_or_kept_without_redirect() -> None:
    with TestClient(create_app({"/hello": hello}, disable_index=True)) as client:
        assert client.get("/").status_code == 404
    with TestClient(create_app({"/hello": hello}, disable_index_redirect=True)) as client:
        assert 'href="/hello"' in client.get("/", follow_redirects=False).text


def test_a_single_target_is_served_at_the_root() -> None:
    with TestClient(create_app(hello)) as client:
        assert token_in(client.get("/").text)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(hello, id="function"),
        pytest.param(Application(FunctionHandler(hello)), id="application"),
        pytest.param(str(EXAMPLES / "demo.py"), id="script"),
        pytest.param(TEST_APPS / "dir_app", id="directory"),
    ],
)
def test_every_kind_of_app_is_served(target: object) -> None:
    with TestClient(create_app({"/app": target})) as client:
        response = client.get("/app")
        assert response.status_code == 200
        assert token_in(response.text)


def test_a_missing_app_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no Bokeh application"):
        create_app({"/x": "/nonexistent/app.py"})


def test_a_broken_app_closes_its_websocket_with_the_reason_and_others_keep_working() -> None:
    app = create_app({"/broken": TEST_APPS / "broken.py", "/hello": hello})
    with TestClient(app) as client:
        token = token_in(client.get("/broken").text)
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/broken/ws", subprotocols=["bokeh", token]) as ws:
                ws.receive_text()
        assert closed.value.code == 1011
        assert "broken on purpose" in closed.value.reason
        assert "Traceback" not in closed.value.reason
        assert client.get("/hello").status_code == 200


def test_middleware_a_user_adds_sees_the_apps_websockets_too() -> None:
    """An app's websocket skips the app's own middleware and router (each would hold a
    coroutine for the websocket's life), but never a user's: an auth check must see it."""
    seen: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((scope["type"], scope.get("path", "")))
            await self.app(scope, receive, send)

    app = create_app({"/hello": hello})
    app.add_middleware(Recorder)
    with TestClient(app) as client:
        token = token_in(client.get("/hello").text)
        with client.websocket_connect("/hello/ws", subprotocols=["bokeh", token]) as ws:
            assert '"msgtype":"ACK"' in ws.receive_text().replace(" ", "")
    assert ("websocket", "/hello/ws") in seen


def test_after_the_first_page_a_page_fetch_runs_no_app_code_until_its_websocket_connects() -> None:
    with TestClient(create_app({"/hello": hello})) as client:
        context = client.app.state.server.contexts["/hello"]  # type: ignore[attr-defined]
        first = token_in(client.get("/hello").text)
        assert len(context.sessions) == 1, "the app's first page ran its code, as bokeh serve does"
        with client.websocket_connect("/hello/ws", subprotocols=["bokeh", first]):
            assert len(context.sessions) == 1, "the first page's websocket took its session"
        html = client.get("/hello").text
        assert len(context.sessions) == 1, "a crawler or probe costs a token"
        with client.websocket_connect("/hello/ws", subprotocols=["bokeh", token_in(html)]):
            assert len(context.sessions) == 2


@pytest.mark.parametrize("first", ["/library", "/library/autoload.js?bokeh-autoload-element=x"])
def test_the_first_page_loads_the_scripts_of_model_classes_the_app_code_defines(first: str) -> None:
    defined: list[type] = []

    def with_library(doc: Document) -> None:
        class WithLibrary(Div):
            __javascript__ = "http://127.0.0.1:9/library.js"

        defined.append(WithLibrary)
        doc.add_root(WithLibrary(text="wraps a JavaScript library"))

    try:
        with TestClient(create_app({"/library": with_library})) as client:
            assert "http://127.0.0.1:9/library.js" in client.get(first).text
    finally:  # Bokeh keeps its classes in a process-wide registry
        for cls in defined:
            _default_resolver.remove(cls)


def own_template(doc: Document) -> None:
    doc.template = Template(
        "<!DOCTYPE html><html><head>{{ bokeh_css }}{{ bokeh_js }}</head>"
        "<body><h1>{{ heading }}</h1>{{ plot_div }}{{ plot_script }}</body></html>"
    )
    doc.template_variables["heading"] = "Quarterly figures"
    doc.add_root(Div(text="hello", name="div"))


def test_a_page_template_set_by_the_app_code_renders_every_page() -> None:
    with TestClient(create_app({"/own": own_template})) as client:
        for _ in range(2):
            html = client.get("/own").text
            assert "<h1>Quarterly figures</h1>" in html
            assert token_in(html)


def test_everything_moves_under_a_prefix() -> None:
    with TestClient(create_app({"/hello": hello}, prefix="/dash/")) as client:
        html = client.get("/dash/hello").text
        assert '<script src="/dash/static/js/bokeh.min.js' in html
        assert client.get("/dash/static/js/bokeh.min.js").status_code == 200
        assert client.get("/hello").status_code == 404
        assert client.get("/dash", follow_redirects=False).headers["location"] == "/dash/hello"


def test_urls_follow_the_asgi_root_path() -> None:
    with TestClient(create_app({"/hello": hello}), root_path="/mounted") as client:
        html = client.get("/hello").text
        assert '<script src="/mounted/static/js/bokeh.min.js' in html


@pytest.mark.parametrize(
    ("prefix", "root_path"),
    [
        pytest.param("", "", id="at-the-root"),
        pytest.param("/dash", "", id="under-a-prefix"),
        pytest.param("/dash", "/mounted", id="under-a-prefix-and-a-root-path"),
    ],
)
def test_each_app_s_websocket_is_at_its_route_and_no_other_path(
    prefix: str, root_path: str
) -> None:
    app = create_app({"/": hello, "/other": hello}, prefix=prefix)
    with TestClient(app, root_path=root_path) as client:
        for route in ("/", "/other/"):
            token = token_in(client.get(prefix + route).text)
            with client.websocket_connect(
                f"{prefix}{route}ws", subprotocols=["bokeh", token]
            ) as ws:
                assert '"msgtype":"ACK"' in ws.receive_text()
        for path in (f"{prefix}/other/ws/", f"{prefix}/missing/ws", f"{prefix}/ws/ws"):
            with pytest.raises(WebSocketDisconnect):  # 404: no Bokeh application there
                with client.websocket_connect(path, subprotocols=["bokeh", token]):
                    pass


def test_autoload_needs_an_element_id(client: TestClient) -> None:
    assert client.get("/hello/autoload.js").status_code == 400


def test_autoload_returns_a_script_with_a_session_token(client: TestClient) -> None:
    response = client.get(
        "/hello/autoload.js",
        params={
            "bokeh-autoload-element": "el1",
            "bokeh-app-path": "/hello",
            "bokeh-absolute-url": "http://testserver/hello",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "el1" in response.text
    assert token_in(response.text)
    assert "http://testserver/static/js/bokeh.min.js" in response.text


def test_autoload_answers_cors_preflight(client: TestClient) -> None:
    response = client.options("/hello/autoload.js", headers={"Origin": "http://other.example"})
    assert response.status_code == 200
    assert "GET" in response.headers["access-control-allow-methods"]


def test_metadata_returns_the_apps_url_and_data() -> None:
    application = Application(FunctionHandler(hello), metadata={"owner": "me"})
    with TestClient(create_app({"/hello": application})) as client:
        assert client.get("/hello/metadata").json() == {"url": "/hello", "data": {"owner": "me"}}


def test_a_page_for_an_existing_session_renders_its_document(client: TestClient) -> None:
    token = token_in(client.get("/hello?bokeh-session-id=mine").text)
    with client.websocket_connect("/hello/ws", subprotocols=["bokeh", token]):
        html = client.get("/hello?bokeh-session-id=mine").text
    assert "<title>hello app</title>" in html
    assert 'data-root-id="' in html, "the session's roots are on the page"
    server = client.app.state.server  # type: ignore[attr-defined]
    assert list(server.contexts["/hello"].sessions) == ["mine"]


def test_a_notebook_without_the_notebook_extra_names_the_extra(tmp_path: Path) -> None:
    try:
        import nbformat  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the notebook extra is installed here")
    notebook = tmp_path / "app.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(ConfigurationError, match=r"app_server\[notebook\]"):
        create_app({"/nb": notebook})

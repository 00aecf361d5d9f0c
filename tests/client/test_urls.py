"""Where a session connects and which page shows it, as bokeh.client computes them."""

from __future__ import annotations

import pytest

from app_server.client.urls import (
    app_url,
    server_url_for_websocket_url,
    session_page_url,
    websocket_url_for_server_url,
    with_arguments,
)


@pytest.mark.parametrize(
    ("http", "ws"),
    [
        pytest.param("http://localhost:5006/", "ws://localhost:5006/ws", id="root"),
        pytest.param("http://host/app", "ws://host/app/ws", id="app"),
        pytest.param("https://host/pre/app", "wss://host/pre/app/ws", id="https"),
    ],
)
def test_websocket_url_for_server_url(http: str, ws: str) -> None:
    assert websocket_url_for_server_url(http) == ws
    assert server_url_for_websocket_url(ws) == http.rstrip("/") + "/"


@pytest.mark.parametrize(
    ("function", "url", "problem"),
    [
        pytest.param(websocket_url_for_server_url, "ftp://host/app", "not an http", id="scheme"),
        pytest.param(server_url_for_websocket_url, "http://host/ws", "not a ws", id="not-ws"),
        pytest.param(server_url_for_websocket_url, "ws://host/app", "does not end", id="no-ws"),
        pytest.param(app_url, "ws://host/app/ws", "websocket URL", id="ws-as-app"),
    ],
)
def test_bad_urls_say_what_is_wrong(function: object, url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        function(url)  # type: ignore[operator]


def test_default_means_bokehs_default_server() -> None:
    assert app_url("default") == "http://localhost:5006"
    assert app_url("http://host/app/") == "http://host/app"


def test_arguments_are_url_encoded() -> None:
    url = "ws://host/app/ws"
    assert with_arguments(url, None) == url
    assert with_arguments(url, {}) == url
    assert with_arguments(url, {"a b": "1&2", "c": "é"}) == url + "?a+b=1%262&c=%C3%A9"
    assert with_arguments(url + "?x=1", {"y": "2"}) == url + "?x=1&y=2"


def test_session_page_url() -> None:
    assert session_page_url("http://host/app/", "a b") == "http://host/app/?bokeh-session-id=a+b"

"""Who may reach a session, and what bounds protect the server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Mount
from starlette.testclient import TestClient, WebSocketDenialResponse

from app_server import ConfigurationError, create_app
from app_server.cookies import create_signed_value
from tests.conftest import EXAMPLES, TEST_APPS
from tests.test_app import token_in

SECRET = "test-cookie-secret"
AUTH = {"auth_module": str(TEST_APPS / "auth_module.py"), "cookie_secret": SECRET}


def pull(client: TestClient, path: str, token: str, **kwargs: object) -> dict:
    """Open the app's websocket and return its document as JSON (a minimal BokehJS)."""
    with client.websocket_connect(f"{path}/ws", subprotocols=["bokeh", token], **kwargs) as ws:
        assert json.loads(ws.receive_text())["msgtype"] == "ACK"
        ws.receive_text(), ws.receive_text()
        ws.send_text('{"msgid":"1","msgtype":"PULL-DOC-REQ"}')
        ws.send_text("{}")
        ws.send_text("{}")
        header = json.loads(ws.receive_text())
        ws.receive_text()
        content = json.loads(ws.receive_text())
        for _ in range(2 * header.get("num_buffers", 0)):
            ws.receive()
        return content["doc"]


@pytest.fixture
def auth_client() -> Iterator[TestClient]:
    with TestClient(create_app({"/who": TEST_APPS / "whoami.py"}, **AUTH)) as client:
        yield client


def test_without_login_a_page_redirects_to_the_login_url(auth_client: TestClient) -> None:
    response = auth_client.get("/who?x=1", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/login?next=%2Fwho%3Fx%3D1"


def test_a_logged_in_user_reaches_the_session_context(auth_client: TestClient) -> None:
    response = auth_client.post("/login?next=/who", data={"name": "bob"}, follow_redirects=False)
    assert response.status_code == 302
    token = token_in(auth_client.get("/who").text)
    doc = pull(auth_client, "/who", token)
    assert "user=bob logout=/logout" in json.dumps(doc)


def test_a_forged_cookie_is_not_a_login(auth_client: TestClient) -> None:
    auth_client.cookies.set("user", create_signed_value("not-the-secret", "user", "mallory"))
    assert auth_client.get("/who", follow_redirects=False).status_code == 302


def test_a_websocket_needs_a_login_and_the_tokens_user(auth_client: TestClient) -> None:
    auth_client.cookies.set("user", create_signed_value(SECRET, "user", "bob"))
    token = token_in(auth_client.get("/who").text)
    auth_client.cookies.clear()
    with pytest.raises(WebSocketDenialResponse) as refused:
        pull(auth_client, "/who", token)
    assert refused.value.status_code == 403
    auth_client.cookies.set("user", create_signed_value(SECRET, "user", "alice"))
    with pytest.raises(WebSocketDenialResponse) as refused:
        pull(auth_client, "/who", token)  # bob's session, alice's cookie
    assert "another user" in refused.value.text
    auth_client.cookies.set("user", create_signed_value(SECRET, "user", "bob"))
    assert "user=bob" in json.dumps(pull(auth_client, "/who", token))


def test_logout_handler_is_served(auth_client: TestClient) -> None:
    response = auth_client.get("/logout", follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == "/login"


def test_xsrf_cookies_guard_login_posts() -> None:
    app = create_app({"/who": TEST_APPS / "whoami.py"}, **AUTH, xsrf_cookies=True)
    with TestClient(app) as client:
        page = client.get("/login")
        assert page.status_code == 200
        xsrf = client.cookies["_xsrf"]
        refused = client.post("/login", data={"name": "bob"}, follow_redirects=False)
        assert refused.status_code == 403
        accepted = client.post(
            "/login", data={"name": "bob", "_xsrf": xsrf}, follow_redirects=False
        )
        assert accepted.status_code == 302


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn):  # type: ignore[no-untyped-def]
        if "x-user" in conn.headers:
            return AuthCredentials(["authenticated"]), SimpleUser(conn.headers["x-user"])
        return None


def test_an_asgi_authentication_middleware_in_front_names_the_user() -> None:
    host = Starlette(
        routes=[Mount("/dash", create_app({"/who": TEST_APPS / "whoami.py"}))],
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth())],
    )
    with TestClient(host) as client:
        token = token_in(client.get("/dash/who", headers={"x-user": "carol"}).text)
        assert "user=carol" in json.dumps(pull(client, "/dash/who", token))


def test_sessions_per_app_are_bounded() -> None:
    with TestClient(create_app({"/demo": EXAMPLES / "demo.py"}, max_sessions_per_app=2)) as client:
        tokens = [token_in(client.get("/demo").text) for _ in range(3)]
        with (
            client.websocket_connect("/demo/ws", subprotocols=["bokeh", tokens[0]]),
            client.websocket_connect("/demo/ws", subprotocols=["bokeh", tokens[1]]),
        ):
            with pytest.raises(WebSocketDenialResponse) as refused:
                pull(client, "/demo", tokens[2])
            assert refused.value.status_code == 503
            assert "limit of 2 sessions" in refused.value.text


def test_sessions_per_client_address_are_bounded() -> None:
    app = create_app({"/demo": EXAMPLES / "demo.py"}, max_sessions_per_client=1)
    with TestClient(app) as client:
        first, second = (token_in(client.get("/demo").text) for _ in range(2))
        with client.websocket_connect("/demo/ws", subprotocols=["bokeh", first]):
            with pytest.raises(WebSocketDenialResponse) as refused:
                pull(client, "/demo", second)
            assert refused.value.status_code == 429


def test_pages_carry_security_headers() -> None:
    with TestClient(create_app({"/demo": EXAMPLES / "demo.py"})) as client:
        headers = client.get("/demo").headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "content-security-policy" not in headers, "none by default, as bokeh serve"
        static = client.get("/static/js/bokeh.min.js").headers
        assert static["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in static


def test_errors_never_show_a_traceback() -> None:
    with TestClient(create_app({"/demo": EXAMPLES / "demo.py"})) as client:
        response = client.get("/demo?bokeh-token=garbage")
        assert response.status_code == 403
        assert "Traceback" not in response.text and "File " not in response.text


def test_a_tornado_login_handler_is_refused_with_its_starlette_equivalent() -> None:
    with pytest.raises(ConfigurationError) as refused:
        create_app(
            {"/who": TEST_APPS / "whoami.py"}, auth_module=str(TEST_APPS / "auth_tornado.py")
        )
    message = str(refused.value)
    assert "LoginHandler is a Tornado RequestHandler" in message
    assert "async def LoginHandler(request):" in message and "RedirectResponse" in message

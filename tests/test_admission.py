"""Who may open which session: one pure decision, facts in, admit or refuse out."""

from __future__ import annotations

import time

import pytest

from app_server import Settings
from app_server.admission import (
    ANSWERS,
    Admit,
    Facts,
    Holdings,
    Refusal,
    Refuse,
    decide,
    origin_allowed,
    token_from_subprotocols,
)
from app_server.protocol import CloseCode
from app_server.tokens import Token, new_session_id, new_token, read_token


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        pytest.param("http://a.com", "a.com", [], True, id="same-origin"),
        pytest.param("http://a.com:8080", "a.com:8080", [], True, id="same-origin-port"),
        pytest.param("https://a.com", "a.com:443", [], True, id="https-default-port"),
        pytest.param("http://a.com", "a.com:443", [], False, id="http-is-not-443"),
        pytest.param("http://evil.com", "a.com", [], False, id="cross-site"),
        pytest.param("http://evil.com", "a.com", ["evil.com"], True, id="allowed-host"),
        pytest.param("http://b.a.com:5006", "x", ["*.a.com:5006"], True, id="wildcard-part"),
        pytest.param("http://b.a.com:5006", "x", ["*.a.com"], False, id="pattern-port-80"),
        pytest.param("https://b.a.com", "x", ["b.a.com"], True, id="pattern-https-443"),
        pytest.param("http://b.a.com:1", "x", ["b.a.com:*"], True, id="any-port"),
        pytest.param("http://anything:9", "x", ["*:*"], True, id="star-star"),
        pytest.param("null", "a.com", [], False, id="opaque-origin"),
    ],
)
def test_origins(origin: str, host: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, host, allowed) is expected


def websocket(settings: Settings, subprotocols: list[str], **facts: object) -> Admit | Refuse:
    """The decision on a websocket handshake offering ``subprotocols``."""
    text = token_from_subprotocols(subprotocols)
    token = None if text is None else read_token(text, settings)
    problem = "offer 'bokeh' and the token" if text is None else None
    defaults: dict = {"websocket": True, "host": "a.com", "problem": problem}
    return decide(Facts(token, **{**defaults, **facts}), settings)


def test_a_valid_token_is_admitted_without_an_origin() -> None:
    settings = Settings()
    token = new_token("session-1", settings)
    decision = websocket(settings, ["bokeh", token.text])
    assert isinstance(decision, Admit) and decision.creates
    assert decision.token is not None and decision.token.session_id == "session-1"


@pytest.mark.parametrize(
    "subprotocols",
    [
        pytest.param([], id="none"),
        pytest.param(["bokeh"], id="no-token"),
        pytest.param(["x", "y"], id="not-bokeh"),
    ],
)
def test_the_subprotocols_must_be_bokeh_and_a_token(subprotocols: list[str]) -> None:
    decision = websocket(Settings(), subprotocols)
    assert isinstance(decision, Refuse) and decision.status == 403


def test_a_foreign_origin_is_refused_with_the_option_to_allow_it() -> None:
    settings = Settings()
    token = new_token("s", settings)
    decision = websocket(settings, ["bokeh", token.text], origin="http://evil.com:81")
    assert isinstance(decision, Refuse) and decision.kind is Refusal.FORBIDDEN_ORIGIN
    assert "--allow-websocket-origin=evil.com:81" in decision.reason


def test_signed_sessions_refuse_a_token_signed_with_another_key() -> None:
    ours = Settings(sign_sessions=True, secret_key="k" * 32)
    theirs = Settings(sign_sessions=True, secret_key="x" * 32)
    forged = new_token(new_session_id(theirs), theirs)
    decision = websocket(ours, ["bokeh", forged.text])
    assert isinstance(decision, Refuse) and "signature" in decision.reason
    good = new_token(new_session_id(ours), ours)
    assert isinstance(websocket(ours, ["bokeh", good.text]), Admit)


def test_an_expired_token_is_refused_even_while_its_session_lives() -> None:
    settings = Settings(session_token_expiration=1)
    token = new_token("s", settings)
    time.sleep(1.1)
    assert read_token(token.text, settings).expired
    for holdings in (Holdings(), Holdings(exists=True)):
        refused = websocket(settings, ["bokeh", token.text], holdings=holdings)
        assert isinstance(refused, Refuse) and refused.kind is Refusal.EXPIRED


def facts(token: Token | None, **kwargs: object) -> Facts:
    return Facts(token, **kwargs)  # type: ignore[arg-type]


def test_a_page_without_a_token_is_admitted_to_a_new_session_unless_ids_come_from_outside() -> None:
    decision = decide(facts(None), Settings())
    assert decision == Admit(None, creates=True)
    external = Settings(sign_sessions=True, secret_key="k" * 32, generate_session_ids=False)
    refused = decide(facts(None), external)
    assert isinstance(refused, Refuse) and "bokeh-session-id" in refused.reason


def test_with_an_auth_module_nobody_gets_in_without_a_login() -> None:
    settings = Settings()
    decision = decide(facts(new_token("s", settings), login_required=True), settings)
    assert isinstance(decision, Refuse) and decision.kind is Refusal.LOGIN_REQUIRED
    admitted = decide(facts(None, login_required=True, user="bob"), settings)
    assert admitted == Admit(None, creates=True, user="bob")


def test_a_token_and_a_session_belong_to_their_user() -> None:
    settings = Settings()
    bobs = new_token("s", settings, {"user": "bob"})
    other = decide(facts(bobs, user="alice"), settings)
    assert isinstance(other, Refuse) and other.kind is Refusal.OTHER_USER
    assert "issued to another user" in other.reason
    anonymous = new_token("s", settings)
    taken = decide(facts(anonymous, user="alice", holdings=Holdings(True, owner="bob")), settings)
    assert isinstance(taken, Refuse) and "belongs to another user" in taken.reason
    assert isinstance(
        decide(facts(bobs, user="bob", holdings=Holdings(True, "bob")), settings), Admit
    )


def test_limits_bind_only_requests_that_create_a_session() -> None:
    settings = Settings(max_sessions_per_app=2, max_sessions_per_client=1)
    token = new_token("s", settings)
    full = Holdings(sessions=2)
    app_full = decide(facts(token, holdings=full, app="/demo"), settings)
    assert isinstance(app_full, Refuse) and app_full.kind is Refusal.APP_FULL
    assert (app_full.status, app_full.close_code) == (503, CloseCode.TRY_AGAIN_LATER)
    assert "/demo holds its limit of 2 sessions" in app_full.reason
    mine = Holdings(sessions=1, client_sessions=1)
    client_full = decide(facts(token, holdings=mine, client="10.0.0.1"), settings)
    assert isinstance(client_full, Refuse) and client_full.status == 429
    assert isinstance(decide(facts(token, holdings=full, creates=False), settings), Admit)
    existing = Holdings(exists=True, sessions=2, client_sessions=1)
    assert isinstance(decide(facts(token, holdings=existing), settings), Admit)


def test_every_refusal_has_an_http_status_and_a_valid_close_code() -> None:
    assert set(ANSWERS) == set(Refusal)
    for status, code in ANSWERS.values():
        assert 400 <= status < 600
        assert 1000 <= code < 1015 and code not in (1004, 1005, 1006)

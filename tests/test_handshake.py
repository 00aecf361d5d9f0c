"""The websocket handshake policy, as a pure function: origin, subprotocols, token."""

from __future__ import annotations

import pytest

from app_server import Settings
from app_server.handshake import Accept, Reject, check_handshake, origin_allowed
from app_server.tokens import new_session_id, new_token


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


def handshake(settings: Settings, **kwargs: object) -> Accept | Reject:
    defaults: dict = {"origin": None, "host": "a.com", "subprotocols": []}
    return check_handshake(settings=settings, **{**defaults, **kwargs})


def test_a_valid_token_is_accepted_without_an_origin() -> None:
    settings = Settings()
    token = new_token("session-1", settings)
    decision = handshake(settings, subprotocols=["bokeh", token])
    assert decision == Accept(session_id="session-1", token=token, expired=False)


@pytest.mark.parametrize(
    "subprotocols",
    [
        pytest.param([], id="none"),
        pytest.param(["bokeh"], id="no-token"),
        pytest.param(["x", "y"], id="not-bokeh"),
    ],
)
def test_the_subprotocols_must_be_bokeh_and_a_token(subprotocols: list[str]) -> None:
    decision = handshake(Settings(), subprotocols=subprotocols)
    assert isinstance(decision, Reject) and decision.status == 403


def test_a_foreign_origin_is_refused_with_the_option_to_allow_it() -> None:
    settings = Settings()
    token = new_token("s", settings)
    decision = handshake(settings, origin="http://evil.com:81", subprotocols=["bokeh", token])
    assert isinstance(decision, Reject)
    assert "--allow-websocket-origin=evil.com:81" in decision.reason


def test_signed_sessions_refuse_a_token_signed_with_another_key() -> None:
    ours = Settings(sign_sessions=True, secret_key="k" * 32)
    theirs = Settings(sign_sessions=True, secret_key="x" * 32)
    forged = new_token(new_session_id(theirs), theirs)
    decision = handshake(ours, subprotocols=["bokeh", forged])
    assert isinstance(decision, Reject) and "signature" in decision.reason
    good = new_token(new_session_id(ours), ours)
    assert isinstance(handshake(ours, subprotocols=["bokeh", good]), Accept)


def test_an_expired_token_is_reported_for_the_caller_to_decide() -> None:
    settings = Settings(session_token_expiration=1)
    token = new_token("s", settings)
    import time

    time.sleep(1.1)
    decision = handshake(settings, subprotocols=["bokeh", token])
    assert isinstance(decision, Accept) and decision.expired

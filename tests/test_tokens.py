"""Tokens are Bokeh's, read once: session id, payload and expiry, the signature checked first."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib

from bokeh.util.token import generate_jwt_token, get_session_id, get_token_payload

from app_server import Settings
from app_server.tokens import (
    MAX_TOKEN_REQUEST,
    new_session_id,
    new_token,
    read_session_id,
    read_token,
    token_payload,
)

SIGNED = Settings(sign_sessions=True, secret_key="k" * 32)
REQUEST = {"arguments": {"N": [b"10"]}, "headers": {"Accept": "*/*"}, "cookies": {"a": "b"}}


def test_a_token_reads_as_bokeh_reads_it() -> None:
    for settings in (Settings(), SIGNED):
        text = generate_jwt_token(
            new_session_id(settings),  # type: ignore[arg-type]
            secret_key=settings.secret_key_bytes,
            signed=settings.sign_sessions,
            extra_payload=REQUEST,
        )
        token = read_token(text, settings)
        assert token.problem is None and not token.expired
        assert token.session_id == get_session_id(text)
        assert dict(token.payload) == get_token_payload(text)
        assert token.payload["arguments"] == {"N": [b"10"]}


def test_a_new_token_knows_what_it_carries() -> None:
    token = new_token(new_session_id(SIGNED), SIGNED, {"user": "bob", **REQUEST})
    read = read_token(token.text, SIGNED)
    assert (read.session_id, read.problem, read.user) == (token.session_id, None, "bob")
    expiry = read.payload["session_expiry"]
    assert abs(expiry - token.payload["session_expiry"]) <= 1  # the clock may tick between
    assert dict(read.payload) == {**token.payload, "session_expiry": expiry}


def test_a_session_s_payload_is_decoded_again_from_its_text_as_bokeh_does() -> None:
    token = new_token(new_session_id(SIGNED), SIGNED, {"user": "bob", **REQUEST})
    assert token_payload(token.text) == get_token_payload(token.text)
    assert token_payload(token.text) == dict(read_token(token.text, SIGNED).payload)


def bokeh_token(claims: dict, signature: str = "") -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{body}.{signature}" if signature else body


def test_a_forged_token_is_refused_before_its_request_is_inflated() -> None:
    bomb = base64.urlsafe_b64encode(zlib.compress(b" " * 50_000_000, 9)).decode().rstrip("=")
    forged = bokeh_token({"session_id": "x.y", "session_expiry": 2**40, "__bk__zlib_": bomb}, "bad")
    assert read_token(forged, SIGNED).problem == "the token's signature is invalid"


def test_an_unsigned_token_inflates_at_most_a_megabyte() -> None:
    bomb = base64.urlsafe_b64encode(zlib.compress(b" " * 50_000_000, 9)).decode().rstrip("=")
    token = bokeh_token({"session_id": "s", "session_expiry": 2**40, "__bk__zlib_": bomb})
    tracemalloc.start()
    try:
        problem = read_token(token, Settings()).problem
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problem == f"the token's request is over {MAX_TOKEN_REQUEST} bytes"
    assert peak < 4 * MAX_TOKEN_REQUEST


def test_a_token_request_up_to_the_cap_is_read() -> None:
    request = json.dumps({"headers": {"Cookie": "x" * 500_000}}).encode()
    packed = base64.urlsafe_b64encode(zlib.compress(request)).decode().rstrip("=")
    token = bokeh_token({"session_id": "s", "session_expiry": 2**40, "__bk__zlib_": packed})
    assert read_token(token, Settings()).payload["headers"]["Cookie"] == "x" * 500_000


def test_broken_tokens_say_what_is_wrong() -> None:
    settings = Settings()
    assert "not a valid" in (read_token("!!!", settings).problem or "")
    assert "names no session" in (read_token(bokeh_token({"a": 1}), settings).problem or "")
    no_expiry = bokeh_token({"session_id": "s"})
    assert "no session expiry" in (read_token(no_expiry, settings).problem or "")
    corrupt = bokeh_token({"session_id": "s", "session_expiry": 2**40, "__bk__zlib_": "AAAA"})
    assert "corrupt" in (read_token(corrupt, settings).problem or "")


def test_a_session_id_alone_is_checked_like_a_token() -> None:
    assert read_session_id(new_session_id(SIGNED), SIGNED).problem is None
    assert "signature" in (read_session_id("made-up", SIGNED).problem or "")
    assert read_session_id("made-up", Settings()).session_id == "made-up"

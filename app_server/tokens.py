"""Session ids and tokens, wire-compatible with ``bokeh.util.token``."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from bokeh.core.types import ID
from bokeh.util.token import (
    check_token_signature,
    generate_jwt_token,
    generate_session_id,
    get_session_id,
    get_token_payload,
)

from .settings import Settings

__all__ = ["TokenCheck", "check_token", "new_session_id", "new_token"]


def new_session_id(settings: Settings) -> str:
    return generate_session_id(secret_key=settings.secret_key_bytes, signed=settings.sign_sessions)


def new_token(session_id: str, settings: Settings, payload: dict[str, Any] | None = None) -> str:
    return generate_jwt_token(
        ID(session_id),
        secret_key=settings.secret_key_bytes,
        signed=settings.sign_sessions,
        expiration=settings.session_token_expiration,
        extra_payload=payload,
    )


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """The outcome of checking a token: the session id, or why the token is refused."""

    session_id: str | None = None
    problem: str | None = None
    expired: bool = False


def _now() -> int:
    return calendar.timegm(dt.datetime.now(tz=dt.UTC).timetuple())


def check_token(token: str, settings: Settings) -> TokenCheck:
    """Decode and verify ``token``; an expired token is reported, not refused, here."""
    try:
        session_id = get_session_id(token)
        payload = get_token_payload(token)
    except Exception:
        return TokenCheck(problem="the token is not a valid Bokeh session token")
    if not session_id:
        return TokenCheck(problem="the token names no session")
    if not check_token_signature(
        token, secret_key=settings.secret_key_bytes, signed=settings.sign_sessions
    ):
        return TokenCheck(problem="the token's signature is invalid")
    expiry = payload.get("session_expiry")
    if not isinstance(expiry, int | float):
        return TokenCheck(problem="the token has no session expiry")
    return TokenCheck(session_id=session_id, expired=_now() >= expiry)

"""Session ids and tokens, wire-compatible with ``bokeh.util.token``, each decoded once.

A token is ``base64(json).signature``; Bokeh compresses the request it carries under one key.
:func:`read_token` checks the signature before it inflates anything, and returns everything
the server needs of the token (session id, payload, expiry), so nothing decodes it again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bokeh.core.types import ID
from bokeh.util.token import generate_jwt_token, generate_session_id

from .settings import Settings

__all__ = [
    "Token",
    "new_session_id",
    "new_token",
    "read_session_id",
    "read_token",
    "token_payload",
]

# the key under which Bokeh stores the zlib-compressed request in a token's JSON
_ZLIB_KEY = "__bk__zlib_"
# the most a token's request may inflate to: a page request's headers, cookies and arguments
# (at most 64 KB of header under `app-server serve`) take a few times that as JSON
MAX_TOKEN_REQUEST = 1024 * 1024


def new_session_id(settings: Settings) -> str:
    return generate_session_id(secret_key=settings.secret_key_bytes, signed=settings.sign_sessions)


@dataclass(frozen=True, slots=True)
class Token:
    """A token as the server reads it: its session and payload, or why it cannot be used."""

    text: str
    session_id: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    expired: bool = False

    @property
    def user(self) -> str | None:
        user = self.payload.get("user")
        return None if user is None else str(user)


def new_token(session_id: str, settings: Settings, payload: dict[str, Any] | None = None) -> Token:
    """A fresh token for ``session_id`` carrying ``payload``, read as the server reads tokens."""
    text = generate_jwt_token(
        ID(session_id),
        secret_key=settings.secret_key_bytes,
        signed=settings.sign_sessions,
        expiration=settings.session_token_expiration,
        extra_payload=payload,
    )
    expiry = int(time.time()) + settings.session_token_expiration
    return Token(text, session_id, {**(payload or {}), "session_expiry": expiry})


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(text: str, key: bytes) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _signed(text: str, settings: Settings) -> bool:
    """Whether ``base.signature`` carries this server's signature (always, unsigned)."""
    if not settings.sign_sessions:
        return True
    base, dot, signature = text.partition(".")
    key = settings.secret_key_bytes
    return bool(dot) and key is not None and hmac.compare_digest(_signature(base, key), signature)


def _bytes_hook(obj: dict[str, Any]) -> Any:
    """Bokeh's encoding of bytes in a token's request: ``{"bytes": base64}``."""
    return _b64decode(obj["bytes"]) if obj.keys() == {"bytes"} else obj


def _inflate(data: bytes) -> bytes:
    """Inflate at most MAX_TOKEN_REQUEST bytes: a zlib bomb stops there, not in memory."""
    inflater = zlib.decompressobj()
    request = inflater.decompress(data, MAX_TOKEN_REQUEST)
    if inflater.unconsumed_tail:  # before flush(), which would inflate the rest
        raise OverflowError
    return request + inflater.flush()


def read_session_id(session_id: str, settings: Settings) -> Token:
    """A session id given without a token (``bokeh-session-id``), checked like a token's."""
    if not session_id:
        return Token("", problem="the session id is empty")
    if not _signed(session_id, settings):
        return Token("", problem="the session id's signature is invalid")
    return Token("", session_id)


def read_token(text: str, settings: Settings) -> Token:
    """Decode and verify ``text``; an expired token is reported, not refused, here."""
    try:
        claims = _claims(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return Token(text, problem="the token is not a valid Bokeh session token")
    session_id = claims.pop("session_id", None)
    if not isinstance(session_id, str) or not session_id:
        return Token(text, problem="the token names no session")
    if not _signed(text, settings) or not _signed(session_id, settings):
        return Token(text, problem="the token's signature is invalid")
    try:
        _inflate_request(claims)
    except (ValueError, TypeError, binascii.Error, zlib.error, UnicodeDecodeError):
        return Token(text, problem="the token's request data is corrupt")
    except OverflowError:
        return Token(text, problem=f"the token's request is over {MAX_TOKEN_REQUEST} bytes")
    expiry = claims.get("session_expiry")
    if not isinstance(expiry, int | float):
        return Token(text, problem="the token has no session expiry")
    return Token(text, session_id, claims, expired=time.time() >= expiry)


def token_payload(text: str) -> dict[str, Any]:
    """The payload of a token :func:`read_token` accepted, decoded again: what a session keeps
    is the token's text, as Bokeh does, not its decoded request (a kilobyte or more)."""
    claims = _claims(text)
    claims.pop("session_id", None)
    _inflate_request(claims)
    return claims


def _claims(text: str) -> dict[str, Any]:
    claims = json.loads(_b64decode(text.partition(".")[0]))
    if not isinstance(claims, dict):
        raise ValueError("a token's claims are a JSON object")
    return claims


def _inflate_request(claims: dict[str, Any]) -> None:
    """Replace the compressed request Bokeh puts in a token by what it holds."""
    packed = claims.pop(_ZLIB_KEY, None)
    if packed is not None:
        claims.update(json.loads(_inflate(_b64decode(packed)), object_hook=_bytes_hook))

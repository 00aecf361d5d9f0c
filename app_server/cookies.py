"""Signed cookies in Tornado's format (version 2), so Bokeh auth modules keep working.

``bokeh serve --cookie-secret`` signs cookies with Tornado's ``set_secure_cookie``; an auth
module reads them back with ``get_secure_cookie``. The format is
``2|1:0|<len>:<timestamp>|<len>:<name>|<len>:<base64 value>|<hex hmac-sha256>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["create_signed_value", "decode_signed_value"]

DEFAULT_MAX_AGE_DAYS = 31


def _field(value: bytes) -> bytes:
    return str(len(value)).encode() + b":" + value


def _signature(secret: str | bytes, payload: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


def create_signed_value(
    secret: str | bytes, name: str, value: str | bytes, *, now: float | None = None
) -> str:
    """A cookie value that :func:`decode_signed_value` (and Tornado) accept."""
    data = value.encode() if isinstance(value, str) else value
    timestamp = str(int(time.time() if now is None else now)).encode()
    payload = b"|".join(
        [
            b"2",
            _field(b"0"),
            _field(timestamp),
            _field(name.encode()),
            _field(base64.b64encode(data)),
            b"",
        ]
    )
    return (payload + _signature(secret, payload)).decode()


def _split_fields(rest: bytes, count: int) -> list[bytes] | None:
    fields = []
    for _ in range(count):
        length, sep, rest = rest.partition(b":")
        if not sep or not length.isdigit():
            return None
        size = int(length)
        value, rest = rest[:size], rest[size:]
        if len(value) != size or rest[:1] != b"|":
            return None
        fields.append(value)
        rest = rest[1:]
    fields.append(rest)
    return fields


def decode_signed_value(
    secret: str | bytes,
    name: str,
    value: str | None,
    *,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    now: float | None = None,
) -> bytes | None:
    """The cookie's value if its signature, name and age check out, else ``None``."""
    if not value or not value.startswith("2|"):
        return None
    raw = value.encode()
    fields = _split_fields(raw[2:], 4)
    if fields is None:
        return None
    _key_version, timestamp, cookie_name, encoded, signature = fields
    payload = raw[: len(raw) - len(signature)]
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return None
    if cookie_name != name.encode() or not timestamp.isdigit():
        return None
    current = time.time() if now is None else now
    if int(timestamp) < current - max_age_days * 86400 or int(timestamp) > current + 31 * 86400:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        return None

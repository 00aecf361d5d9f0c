"""Who may open a websocket to a session: a pure decision on the handshake's headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .settings import Settings
from .tokens import check_token

__all__ = ["Accept", "Reject", "check_handshake", "origin_allowed"]


@dataclass(frozen=True, slots=True)
class Accept:
    session_id: str
    token: str
    expired: bool


@dataclass(frozen=True, slots=True)
class Reject:
    status: int
    reason: str


def _with_port(host: str, default_port: int = 80) -> str:
    host = host.lower()
    return host if ":" in host.rsplit("]", 1)[-1] else f"{host}:{default_port}"


def _match(host: str, pattern: str, default_port: int) -> bool:
    """Bokeh's host patterns: ``*`` matches any one name part or the port.

    A host or pattern without a port means the default port of the origin's scheme.
    """
    host_name, _, host_port = _with_port(host, default_port).rpartition(":")
    pattern_name, _, pattern_port = _with_port(pattern, default_port).rpartition(":")
    if pattern_port not in ("*", host_port):
        return False
    if pattern_name == "*":
        return True
    host_parts, pattern_parts = host_name.split("."), pattern_name.split(".")
    return len(host_parts) == len(pattern_parts) and all(
        p in ("*", h) for h, p in zip(host_parts, pattern_parts, strict=True)
    )


def origin_allowed(origin: str, host: str | None, allowed: Sequence[str]) -> bool:
    """Same-origin requests always pass; others must match ``--allow-websocket-origin``."""
    parts = urlsplit(origin)
    origin_host = parts.netloc.lower()
    if not origin_host:
        return False
    default_port = 443 if parts.scheme in ("https", "wss") else 80
    if host and _with_port(origin_host, default_port) == _with_port(host, default_port):
        return True
    return any(_match(origin_host, pattern, default_port) for pattern in allowed)


def check_handshake(
    *,
    origin: str | None,
    host: str | None,
    subprotocols: Sequence[str],
    settings: Settings,
) -> Accept | Reject:
    """Decide a websocket handshake before any session is looked up or created."""
    if origin is not None and not origin_allowed(origin, host, settings.allow_websocket_origin):
        netloc = urlsplit(origin).netloc
        return Reject(
            403,
            f"websocket connections from origin {origin!r} are not allowed; "
            f"start the server with --allow-websocket-origin={netloc} to permit them",
        )
    if len(subprotocols) != 2 or subprotocols[0] != "bokeh":
        return Reject(
            403, "a Bokeh websocket must offer two subprotocols: 'bokeh' and the session token"
        )
    token = subprotocols[1]
    check = check_token(token, settings)
    if check.session_id is None:
        return Reject(403, f"invalid session token: {check.problem}")
    return Accept(session_id=check.session_id, token=token, expired=check.expired)

"""Who may open which session: one pure decision for pages, autoload.js, websockets and tests.

A view gathers the facts of a request (the token it presented, decoded once; the user; the
origin; what the application holds now) and :func:`decide` answers with :class:`Admit` or
:class:`Refuse`. No I/O happens here; :data:`ANSWERS` is the one table from a refusal's kind
to the HTTP status and the websocket close code that carry it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .protocol import CloseCode
from .settings import Settings
from .tokens import Token

__all__ = [
    "ANSWERS",
    "Admit",
    "Facts",
    "Holdings",
    "Refusal",
    "Refuse",
    "decide",
    "origin_allowed",
    "token_from_subprotocols",
]


class Refusal(enum.Enum):
    """Why a request may not open its session."""

    NO_SUCH_APP = "no such app"
    BAD_REQUEST = "bad request"
    FORBIDDEN_ORIGIN = "forbidden origin"
    BAD_TOKEN = "bad token"
    EXPIRED = "expired token"
    LOGIN_REQUIRED = "login required"
    OTHER_USER = "another user's session"
    APP_FULL = "app full"
    CLIENT_FULL = "client full"
    APP_FAILED = "app failed"


ANSWERS: dict[Refusal, tuple[int, CloseCode]] = {
    Refusal.NO_SUCH_APP: (404, CloseCode.POLICY_VIOLATION),
    Refusal.BAD_REQUEST: (403, CloseCode.POLICY_VIOLATION),
    Refusal.FORBIDDEN_ORIGIN: (403, CloseCode.POLICY_VIOLATION),
    Refusal.BAD_TOKEN: (403, CloseCode.POLICY_VIOLATION),
    Refusal.EXPIRED: (403, CloseCode.POLICY_VIOLATION),
    Refusal.LOGIN_REQUIRED: (403, CloseCode.POLICY_VIOLATION),  # pages: the login redirect
    Refusal.OTHER_USER: (403, CloseCode.POLICY_VIOLATION),
    Refusal.APP_FULL: (503, CloseCode.TRY_AGAIN_LATER),
    Refusal.CLIENT_FULL: (429, CloseCode.TRY_AGAIN_LATER),
    Refusal.APP_FAILED: (500, CloseCode.INTERNAL_ERROR),
}


@dataclass(frozen=True, slots=True)
class Refuse:
    kind: Refusal
    reason: str

    @property
    def status(self) -> int:
        return ANSWERS[self.kind][0]

    @property
    def close_code(self) -> CloseCode:
        return ANSWERS[self.kind][1]


@dataclass(frozen=True, slots=True)
class Admit:
    """Open (or create, when ``creates``) the token's session; no token: issue a new one."""

    token: Token | None
    creates: bool
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the application holds now, as far as this request is concerned."""

    exists: bool = False  # the token's session exists (or is being created)
    owner: str | None = None  # the user who opened it
    sessions: int = 0  # sessions of the app, created or being created
    client_sessions: int = 0  # of those, opened from this request's client address


@dataclass(frozen=True, slots=True)
class Facts:
    """One request to open a session, as the view found it."""

    token: Token | None  # None: a page that asks for a new session
    user: str | None = None
    login_required: bool = False
    holdings: Holdings = Holdings()
    creates: bool = True  # a missing session would be created by this request
    websocket: bool = False
    origin: str | None = None
    host: str | None = None
    problem: str | None = None  # the request itself is malformed (the view says how)
    app: str = "/"
    client: str | None = None


def _with_port(host: str, default_port: int) -> str:
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


def token_from_subprotocols(subprotocols: Sequence[str]) -> str | None:
    """BokehJS offers two subprotocols: ``bokeh`` and the session token."""
    if len(subprotocols) != 2 or subprotocols[0] != "bokeh":
        return None
    return subprotocols[1]


def decide(facts: Facts, settings: Settings) -> Admit | Refuse:
    """Admit the request to its session, or refuse it with the reason the user will read."""
    if facts.websocket and facts.origin is not None:
        if not origin_allowed(facts.origin, facts.host, settings.allow_websocket_origin):
            netloc = urlsplit(facts.origin).netloc
            return Refuse(
                Refusal.FORBIDDEN_ORIGIN,
                f"websocket connections from origin {facts.origin!r} are not allowed; "
                f"start the server with --allow-websocket-origin={netloc} to permit them",
            )
    if facts.problem is not None:
        return Refuse(Refusal.BAD_REQUEST, facts.problem)
    if facts.login_required and facts.user is None:
        return Refuse(Refusal.LOGIN_REQUIRED, "log in before opening this application")
    token, holdings = facts.token, facts.holdings
    if token is None:
        if not settings.generate_session_ids:
            return Refuse(Refusal.BAD_REQUEST, "this server needs a bokeh-session-id argument")
        return _within_limits(facts, settings) or Admit(None, facts.creates, facts.user)
    if token.problem is not None:
        return Refuse(Refusal.BAD_TOKEN, f"invalid session token: {token.problem}")
    if facts.user is not None and token.user not in (None, facts.user):
        return Refuse(Refusal.OTHER_USER, "this token was issued to another user")
    if holdings.owner not in (None, facts.user or token.user):
        return Refuse(Refusal.OTHER_USER, "this session belongs to another user")
    if token.expired:  # also for a session that still lives, as in Bokeh: a token is not a key
        return Refuse(  # that reconnecting every few seconds keeps valid for ever
            Refusal.EXPIRED,
            "the token has expired; reload the page, or raise --session-token-expiration",
        )
    if holdings.exists:
        return Admit(token, False, facts.user)
    return _within_limits(facts, settings) or Admit(token, facts.creates, facts.user)


def _within_limits(facts: Facts, settings: Settings) -> Refuse | None:
    """The session limits, for a request that would create a session."""
    if not facts.creates:
        return None
    held, limit = facts.holdings.sessions, settings.max_sessions_per_app
    if limit is not None and held >= limit:
        return Refuse(
            Refusal.APP_FULL,
            f"the application {facts.app} holds its limit of {limit} sessions; try again later",
        )
    mine, limit = facts.holdings.client_sessions, settings.max_sessions_per_client
    if limit is not None and mine >= limit:
        return Refuse(
            Refusal.CLIENT_FULL,
            f"{facts.client} already holds {limit} sessions of {facts.app}; close some tabs",
        )
    return None

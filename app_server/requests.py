"""The request object app code sees as ``session_context.request`` and in ``process_request``.

Bokeh hands apps a Tornado request; this proxy offers the attributes apps use
(``arguments``, ``cookies``, ``headers``, ``path``, ``uri``, ``query``, ``host``,
``remote_ip``, ``protocol``, ``method``) with the same types and spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection

from .settings import Settings
from .tokens import token_payload

__all__ = ["SessionRequest", "header_name", "request_payload"]


def header_name(name: str) -> str:
    """Spell a header as Tornado does (``x-custom-header`` gives ``X-Custom-Header``)."""
    return "-".join(part.capitalize() for part in name.split("-"))


def _filtered(
    names: Iterable[str], include: list[str] | None, exclude: list[str] | None
) -> set[str]:
    names = set(names)
    if include is not None:
        return names & set(include)
    return names - set(exclude or ())


def query_arguments(query_string: str) -> dict[str, list[bytes]]:
    parsed = parse_qs(query_string, keep_blank_values=True)
    return {name: [value.encode() for value in values] for name, values in parsed.items()}


def _headers(conn: HTTPConnection) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in conn.scope["headers"]:
        name = header_name(raw_name.decode("latin-1"))
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _arguments(conn: HTTPConnection) -> dict[str, list[bytes]]:
    arguments = query_arguments(conn.scope.get("query_string", b"").decode("latin-1"))
    for internal in ("bokeh-session-id", "bokeh-token"):
        arguments.pop(internal, None)
    return arguments


def request_payload(conn: HTTPConnection, settings: Settings) -> dict[str, Any]:
    """What of a page request travels in the session token, as ``bokeh serve`` puts it there."""
    headers = _headers(conn)
    kept_headers = _filtered(headers, settings.include_headers, settings.exclude_headers)
    kept_cookies = _filtered(conn.cookies, settings.include_cookies, settings.exclude_cookies)
    cookies = {name: conn.cookies[name] for name in kept_cookies}
    header_map = {name: headers[name] for name in kept_headers}
    if cookies and "Cookie" in header_map and "Cookie" not in (settings.include_headers or ()):
        del header_map["Cookie"]
    return {"headers": header_map, "cookies": cookies, "arguments": _arguments(conn)}


_Fields = tuple[dict[str, list[bytes]], dict[str, str], dict[str, str]]


class SessionRequest:
    """A read-only view of the request that opened a session.

    A session's ``arguments``, ``cookies`` and ``headers`` are those its token records, decoded
    from the token's text (which the session keeps anyway) when the app first reads them: most
    apps never do, and the decoded request is a kilobyte or more per session.
    """

    def __init__(
        self,
        conn: HTTPConnection | None = None,
        *,
        arguments: Mapping[str, list[bytes]] | None = None,
        cookies: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str = "",
    ) -> None:
        """``token``: the text of a token ``read_token`` accepted. What it does not record is
        taken from ``arguments``, ``cookies`` and ``headers``."""
        self._conn = conn
        self._token = token
        self._decoded: _Fields | None = None
        given = {"arguments": arguments, "cookies": cookies, "headers": headers}
        # None when the token records it all (a page's): a session holds no empty dict
        self._given = {name: value for name, value in given.items() if value is not None} or None

    @classmethod
    def unfiltered(cls, conn: HTTPConnection) -> SessionRequest:
        """Everything the request carried (for ``process_request`` hooks)."""
        return cls(conn, arguments=_arguments(conn), cookies=conn.cookies, headers=_headers(conn))

    @property
    def arguments(self) -> dict[str, list[bytes]]:
        return self._fields()[0]

    @property
    def cookies(self) -> dict[str, str]:
        return self._fields()[1]

    @property
    def headers(self) -> dict[str, str]:
        return self._fields()[2]

    def _fields(self) -> _Fields:
        """``arguments``, ``cookies`` and ``headers``, decoded from the token once for the
        three, when the app first reads one of them."""
        decoded = self._decoded
        if decoded is None:
            recorded = token_payload(self._token) if self._token else {}
            given = self._given or {}

            def field(name: str) -> dict[str, Any]:
                value = recorded.get(name)
                return dict((given.get(name) if value is None else value) or {})

            cookies = field("cookies")
            headers = field("headers")
            if "Cookie" not in headers and cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            decoded = self._decoded = (field("arguments"), cookies, headers)
        return decoded

    @property
    def path(self) -> str:
        return self._conn.url.path if self._conn else ""

    @property
    def query(self) -> str:
        return self._conn.url.query if self._conn else ""

    @property
    def uri(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def host(self) -> str:
        return self._conn.url.netloc if self._conn else ""

    @property
    def protocol(self) -> str:
        if self._conn is None:
            return "http"
        return "https" if self._conn.url.scheme in ("https", "wss") else "http"

    @property
    def remote_ip(self) -> str | None:
        client = self._conn.client if self._conn else None
        return client.host if client else None

    @property
    def method(self) -> str:
        return self._conn.scope.get("method", "GET") if self._conn else "GET"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"session_context.request has no attribute {name!r}: app_server offers "
            "arguments, cookies, headers, path, query, uri, host, protocol, remote_ip and "
            "method (headers and cookies are filtered by --include-headers/--exclude-headers "
            "and --include-cookies/--exclude-cookies)"
        )

    def __repr__(self) -> str:
        return f"<SessionRequest {self.method} {self.uri!r}>"

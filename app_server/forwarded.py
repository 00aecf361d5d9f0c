"""``X-Forwarded-*`` headers (``--use-xheaders``), believed only from the trusted proxies.

A reverse proxy says who the client is (``X-Forwarded-For``), how it came (``-Proto``) and
which host it addressed (``-Host``, which websocket origins are checked against). Anyone else
sending them would spoof the origin check and the per-client session limit, so they are read
only when the direct peer is one of ``--forwarded-allow-ips`` (loopback by default, as in
uvicorn) or a unix socket's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ForwardedHeaders", "Trusted", "forwarded", "public_host"]

_PUBLIC_HOST = "app_server.public_host"  # the scope key of a trusted X-Forwarded-Host

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trusted:
    """The proxies whose headers are believed: addresses or networks, or ``*`` for any."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.any = "*" in entries
        self.networks: list[Network] = [
            ipaddress.ip_network(entry, strict=False) for entry in entries if entry != "*"
        ]

    def __contains__(self, host: str) -> bool:
        if self.any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _last(value: bytes) -> str:
    return value.decode("latin-1").split(",")[-1].strip()


class ForwardedHeaders:
    """Take the client, scheme and public host from a trusted proxy's ``X-Forwarded-*``."""

    def __init__(self, app: ASGIApp, trusted: Trusted) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = forwarded(scope, self.trusted)
        await self.app(scope, receive, send)


def forwarded(scope: Scope, trusted: Trusted) -> Scope:
    """``scope`` as the client sent it through a trusted proxy: a copy with the client, the
    scheme and the public host its ``X-Forwarded-*`` say; ``scope`` itself from anyone else."""
    peer = scope.get("client")
    if peer is not None and peer[0] not in trusted:  # None: a unix socket's peer
        return scope
    headers = dict(scope["headers"])
    scope = dict(scope)
    proto = headers.get(b"x-forwarded-proto")
    if proto is not None:
        secure = _last(proto).lower() in ("https", "wss")
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = "https" if secure else "http"
    chain = headers.get(b"x-forwarded-for")
    if chain is not None:
        # the nearest address no trusted proxy added is the client's
        hops = [hop.strip() for hop in chain.decode("latin-1").split(",") if hop.strip()]
        client = next((hop for hop in reversed(hops) if hop not in trusted), None)
        if client is None and hops:
            client = hops[0]
        if client is not None:
            scope["client"] = (client, 0)
    host = headers.get(b"x-forwarded-host")
    if host is not None:
        scope[_PUBLIC_HOST] = host.decode("latin-1").split(",")[0].strip()
    return scope


def public_host(conn: HTTPConnection) -> str | None:
    """The host the client addressed: a trusted proxy's ``X-Forwarded-Host``, else ``Host``."""
    host = conn.scope.get(_PUBLIC_HOST)
    return host if host is not None else conn.headers.get("host")

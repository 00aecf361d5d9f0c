"""The listening sockets of ``app-server serve``, bound before any app code runs: a port in use
is then one line of error, not a traceback after the apps' ``on_server_loaded`` has run."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterable

from .exceptions import ConfigurationError

__all__ = ["ListenError", "bind", "close", "urls"]


class ListenError(ConfigurationError):
    """The address cannot be listened on (in use, not ours, not resolvable)."""


def bind(address: str, port: int, unix_socket: str | None = None) -> list[socket.socket]:
    """Bound sockets (not yet listening) for every address ``address`` resolves to (both
    127.0.0.1 and ::1 for ``localhost``, as asyncio binds them); port 0 picks one free port."""
    if unix_socket:
        return [_bind_unix(unix_socket)]
    try:
        found = socket.getaddrinfo(
            address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {address}: {exc.strerror} (give --address an address or a "
            "name this machine resolves)"
        ) from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, where in found:
            if sockets and port == 0:  # the port the first address got, on every address
                where = (where[0], sockets[0].getsockname()[1], *where[2:])
            sockets.append(_bind_tcp(family, kind, proto, where))
    except BaseException:
        close(sockets)
        raise
    return sockets


def _bind_tcp(family: int, kind: int, proto: int, where: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # :: must not take 0.0.0.0's port too
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(where)
    except OSError as exc:
        sock.close()
        host, port = where[0], where[1]
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise _error(exc, shown, "--port") from exc
    sock.set_inheritable(True)
    return sock


def _bind_unix(path: str) -> socket.socket:
    if _stale_socket_file(path):  # left by a server that stopped: asyncio removes it too
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)  # as uvicorn does: the proxy in front runs as another user
    except OSError as exc:
        sock.close()
        raise _error(exc, path, "--unix-socket") from exc
    sock.set_inheritable(True)
    return sock


def _stale_socket_file(path: str) -> bool:
    """A socket file nothing listens on (a live server's is left alone: in use)."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def _error(exc: OSError, where: str, option: str) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        return ListenError(
            f"{where} is already in use: stop what listens there, or choose another {option}"
        )
    if exc.errno == errno.EACCES:
        return ListenError(
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges; "
            f"choose another {option})"
        )
    return ListenError(f"cannot listen on {where}: {exc.strerror or exc}")


def close(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def urls(
    sockets: list[socket.socket],
    address: str,
    routes: Iterable[str],
    *,
    prefix: str = "",
    https: bool = False,
) -> list[str]:
    """Each app's full URL on the first socket (for the "running on" lines)."""
    paths = [prefix + route for route in sorted(routes)] or [prefix + "/"]
    first = sockets[0]
    if first.family == socket.AF_UNIX:
        return [f"{path} on unix socket {first.getsockname()}" for path in paths]
    host = address or "0.0.0.0"
    host = f"[{host}]" if ":" in host else host
    base = f"{'https' if https else 'http'}://{host}:{first.getsockname()[1]}"
    return [base + path for path in paths]

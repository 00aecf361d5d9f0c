"""A worker process of ``app-server serve --num-procs``, started by ``supervisor.py`` as
``python -P _worker.py LISTEN_FD... CHANNEL_FD``.

It answers its supervisor from its first instant: the answering thread starts before bokeh,
starlette, pydantic and the apps are imported (0.7 s of CPU on an idle host, many seconds on a
starved one), so a slow start is never taken for a hang. Run by path (``-P``: its directory
is not put on ``sys.path``) rather than with ``-m``, which would import the ``app_server``
package, and with it bokeh, first. Hence only the standard library above ``main``.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

__all__ = ["WorkerStatus", "main"]


class WorkerStatus:
    """What the worker tells its supervisor: serving or not yet; and whether the supervisor
    is gone (its channel closed), in which case the worker stops too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None  # the uvicorn.Server, once it exists
        self.orphaned = False

    def serving(self) -> bool:
        server = self._server
        return server is not None and bool(server.started)

    def attach(self, server: Any) -> bool:
        """Answer for ``server`` from now on; False if the supervisor is already gone."""
        with self._lock:
            self._server = server
            return not self.orphaned

    def orphan(self) -> None:
        with self._lock:
            self.orphaned = True
            if self._server is not None:
                self._server.should_exit = True


def answer(channel: socket.socket, status: WorkerStatus) -> None:
    """Answer every ping: ``1`` once the server serves, ``0`` before."""
    while True:
        try:
            ping = channel.recv(64)
            if ping:
                channel.sendall(b"1" if status.serving() else b"0")
                continue
        except OSError:
            pass
        status.orphan()
        return


def main(argv: list[str]) -> None:
    *listen_fds, channel_fd = (int(arg) for arg in argv)
    status = WorkerStatus()
    channel = socket.socket(fileno=channel_fd)
    threading.Thread(target=answer, args=(channel, status), name="supervisor", daemon=True).start()

    from app_server.cli import serve_worker  # the heavy imports, now that pings are answered

    serve_worker([socket.socket(fileno=fd) for fd in listen_fds], status)


if __name__ == "__main__":
    main(sys.argv[1:])

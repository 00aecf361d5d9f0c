"""``app-server serve``: the command line of ``bokeh serve``, on uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import uvicorn
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette

from .app import create_app
from .applications import routes_for_paths
from .exceptions import ConfigurationError
from .logs import LogFormat, logging_config
from .server import AppServer
from .settings import LogLevel, Settings

__all__ = ["app_from_environment", "main"]

log = logging.getLogger("app_server.cli")

APPS_VARIABLE = "APP_SERVER_APPS"

_SESSION_IDS = {
    "unsigned": {"sign_sessions": False, "generate_session_ids": True},
    "signed": {"sign_sessions": True, "generate_session_ids": True},
    "external-signed": {"sign_sessions": True, "generate_session_ids": False},
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app-server", description="Serve Bokeh applications on asyncio and ASGI."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve Bokeh apps (as `bokeh serve` does)")
    serve.add_argument(
        "files", nargs="+", metavar="PATH", help="app scripts (.py) or app directories"
    )
    serve.add_argument("--address", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 5006; 0 picks one)")
    serve.add_argument("--prefix", help="URL prefix for every route, e.g. /dash")
    serve.add_argument(
        "--allow-websocket-origin",
        action="append",
        metavar="HOST[:PORT]",
        help="a host whose pages may open websockets here (repeatable; * allows any); "
        "pages served by this server itself are always allowed",
    )
    serve.add_argument("--show", action="store_true", help="open the app in a browser")
    serve.add_argument("--log-level", choices=get_args(LogLevel), help="default info")
    serve.add_argument("--log-format", choices=get_args(LogFormat), default="text")
    serve.add_argument("--num-procs", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--dev", action="store_true", help="restart when app files change")
    serve.add_argument("--disable-index", action="store_true", help="no index page at /")
    serve.add_argument(
        "--disable-index-redirect",
        action="store_true",
        help="list a single app instead of redirecting",
    )
    serve.add_argument("--use-xheaders", action="store_true", help="trust X-Forwarded-* headers")
    serve.add_argument("--session-ids", choices=sorted(_SESSION_IDS), help="default unsigned")
    serve.add_argument("--session-token-expiration", type=int, metavar="SECONDS")
    serve.add_argument(
        "--keep-alive", type=int, metavar="MS", help="websocket ping interval; 0 is off"
    )
    serve.add_argument("--check-unused-sessions", type=int, metavar="MS")
    serve.add_argument(
        "--unused-session-lifetime", type=int, metavar="MS", help="for sessions never connected"
    )
    serve.add_argument(
        "--disconnected-session-lifetime",
        type=int,
        metavar="MS",
        help="how long a session outlives its last websocket, for reconnects (default 5000)",
    )
    serve.add_argument("--websocket-max-message-size", type=int, metavar="BYTES")
    serve.add_argument("--num-threads", type=int, help="threads for unlocked callbacks (default 4)")
    serve.add_argument(
        "--auth-module", metavar="PATH", help="a Bokeh auth module (get_user, login_url...)"
    )
    serve.add_argument(
        "--cookie-secret", metavar="SECRET", help="signs cookies (get_secure_cookie)"
    )
    serve.add_argument(
        "--enable-xsrf-cookies",
        dest="xsrf_cookies",
        action="store_true",
        help="login/logout POSTs must echo the _xsrf cookie",
    )
    serve.add_argument(
        "--websocket-compression", action="store_true", help="compress websocket messages"
    )
    serve.add_argument("--max-sessions-per-app", type=int, metavar="N")
    serve.add_argument("--max-sessions-per-client", type=int, metavar="N")
    serve.add_argument(
        "--outbound-queue-size",
        type=int,
        metavar="MESSAGES",
        help="messages a client may lag behind before it is disconnected",
    )
    for name in ("include-headers", "exclude-headers", "include-cookies", "exclude-cookies"):
        serve.add_argument(f"--{name}", nargs="+", metavar="NAME")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Command-line options override the environment, which overrides the defaults."""
    fields = set(Settings.model_fields)
    options: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if key in fields and value is not None and value is not False
    }
    if args.session_ids:
        options.update(_SESSION_IDS[args.session_ids])
    return Settings(**options)


def _to_environment(settings: Settings, routes: dict[str, str]) -> dict[str, str]:
    """Settings and apps as environment variables, for worker processes to rebuild them."""
    env = {APPS_VARIABLE: json.dumps(routes)}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"APP_SERVER_{name.upper()}"] = str(value)
    return env


def app_from_environment() -> Starlette:
    """The ASGI app each worker builds (uvicorn's factory for --num-procs and --dev)."""
    return create_app(json.loads(os.environ[APPS_VARIABLE]), Settings())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        routes = {route: str(path) for route, path in routes_for_paths(args.files).items()}
        app = create_app(routes, settings)  # fails here, once, on a broken app or setting
    except (ConfigurationError, ValidationError) as exc:
        print(f"app-server: {exc}", file=sys.stderr)
        return 2
    level = "debug" if settings.log_level == "trace" else settings.log_level
    options: dict[str, Any] = {
        "host": settings.address,
        "port": settings.port,
        "log_level": level,
        "log_config": logging_config(level, args.log_format),
        "ws_max_size": settings.websocket_max_message_size,
        "ws_ping_interval": settings.keep_alive / 1000 if settings.keep_alive else None,
        "proxy_headers": settings.use_xheaders,
        "forwarded_allow_ips": "*" if settings.use_xheaders else None,
        "timeout_graceful_shutdown": 10,
        "ws_per_message_deflate": settings.websocket_compression,
    }
    if args.num_procs > 1 or args.dev:
        os.environ.update(_to_environment(settings, routes))
        target: Any = f"{__name__}:app_from_environment"
        options["factory"] = True
        if args.dev:
            options["reload"] = True
            options["reload_dirs"] = sorted({_watch_dir(path) for path in args.files})
            options["reload_includes"] = ["*.py", "*.html", "*.yaml", "*.css", "*.js"]
        else:
            options["workers"] = args.num_procs
    else:
        target = app
    if args.show:
        _open_when_up(settings, sorted(routes))
    if target is not app:
        uvicorn.run(target, **options)
        return 0
    server = _GracefulServer(uvicorn.Config(app, **options), app.state.server)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run()
    return 0 if server.started else 3  # uvicorn's exit status for a failed startup


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, but told to stop (SIGTERM, SIGINT) it first stops listening and closes
    app_server's websockets with 1001; uvicorn itself would close them with 1012, and run the
    lifespan shutdown (session and server unload hooks) only after that."""

    def __init__(self, config: uvicorn.Config, app_server: AppServer) -> None:
        super().__init__(config)
        self.app_server = app_server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:
            listener.close()
        await self.app_server.drain()
        await super().shutdown(sockets)


def _watch_dir(path: str) -> str:
    resolved = Path(path).resolve()
    return str(resolved if resolved.is_dir() else resolved.parent)


def _open_when_up(settings: Settings, routes: list[str]) -> None:
    """Open a browser on the app once the server answers (for --show)."""
    path = settings.prefix + (routes[0] if len(routes) == 1 else "/")
    url = f"http://{settings.address}:{settings.port}{path}"

    def wait_then_open() -> None:
        for _ in range(200):
            try:
                urllib.request.urlopen(
                    f"http://{settings.address}:{settings.port}{settings.prefix}/healthz", timeout=1
                )
            except OSError:
                time.sleep(0.1)
                continue
            webbrowser.open(url)
            return

    threading.Thread(target=wait_then_open, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

"""``app-server serve``: the command line of ``bokeh serve``, on uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import webbrowser
from collections.abc import Sequence
from typing import Any, get_args

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .applications import routes_for_paths
from .exceptions import ConfigurationError
from .settings import LogLevel, Settings

__all__ = ["main"]

log = logging.getLogger("app_server.cli")

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        app = create_app(routes_for_paths(args.files), settings)
    except (ConfigurationError, ValidationError) as exc:
        print(f"app-server: {exc}", file=sys.stderr)
        return 2
    level = "debug" if settings.log_level == "trace" else settings.log_level
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        app,
        host=settings.address,
        port=settings.port,
        log_level=level,
        ws_max_size=settings.websocket_max_message_size,
        ws_ping_interval=settings.keep_alive / 1000 if settings.keep_alive else None,
        proxy_headers=settings.use_xheaders,
        forwarded_allow_ips="*" if settings.use_xheaders else None,
    )
    server = uvicorn.Server(config)
    if args.show:
        _open_when_started(server, settings, sorted(app.state.server.contexts))
    server.run()
    return 0


def _open_when_started(server: uvicorn.Server, settings: Settings, routes: list[str]) -> None:
    def wait_then_open() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            port = (
                server.servers[0].sockets[0].getsockname()[1] if server.servers else settings.port
            )
            path = settings.prefix + (routes[0] if len(routes) == 1 else "/")
            webbrowser.open(f"http://{settings.address}:{port}{path}")

    threading.Thread(target=wait_then_open, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

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
from types import UnionType
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from .app import create_app
from .applications import routes_for_paths
from .exceptions import ConfigurationError
from .logs import logging_config
from .server import AppServer
from .settings import Option, ServeSettings, Settings, build_settings, env_names, option_of

__all__ = ["add_settings_options", "app_from_environment", "main", "settings_from_args"]

log = logging.getLogger("app_server.cli")

APPS_VARIABLE = "APP_SERVER_APPS"


class _Spec(NamedTuple):
    """One command-line option and the fields it sets (several through presets)."""

    flag: str
    dest: str
    names: list[str]
    option: Option


def _specs(model: type[Settings]) -> list[_Spec]:
    """The options of ``model``'s fields, in field order; fields sharing a flag share one."""
    specs: dict[str, _Spec] = {}
    for name, info in model.model_fields.items():
        option = option_of(info)
        if not option.command_line:
            continue
        flag = option.flag or "--" + name.replace("_", "-")
        if flag in specs:
            specs[flag].names.append(name)
        else:
            dest = flag.removeprefix("--").replace("-", "_") if option.presets else name
            specs[flag] = _Spec(flag, dest, [name], option)
    return list(specs.values())


def add_settings_options(parser: argparse.ArgumentParser, model: type[Settings]) -> None:
    """Generate an option per field of ``model``; defaults stay ``None`` so that only the
    options given override the environment."""
    server = parser.add_argument_group(
        "server", "app-server serve's own uvicorn (not settings of create_app)"
    )
    application = parser.add_argument_group(
        "application",
        "the app's settings: also create_app() keywords and, under any ASGI server, "
        "environment variables",
    )
    for spec in _specs(model):
        group = application if spec.names[0] in Settings.model_fields else server
        group.add_argument(spec.flag, dest=spec.dest, default=None, **_argument(model, spec))


def _argument(model: type[Settings], spec: _Spec) -> dict[str, Any]:
    """``add_argument``'s keywords from the field's annotation, description and default."""
    info = model.model_fields[spec.names[0]]
    kind = _base_type(info.annotation)
    kwargs: dict[str, Any] = {"metavar": spec.option.metavar} if spec.option.metavar else {}
    default = info.get_default(call_default_factory=True)
    if spec.option.presets:
        defaults = {name: model.model_fields[name].default for name in spec.names}
        kwargs["choices"] = list(spec.option.presets)
        default = next(
            (key for key, values in spec.option.presets.items() if values == defaults), None
        )
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(kind) is Literal:
        kwargs["choices"] = get_args(kind)
    elif get_origin(kind) is list and spec.option.repeat:
        kwargs["action"] = "append"
    elif get_origin(kind) is list:
        kwargs.update(action="extend", nargs="+")
    elif kind is int:
        kwargs["type"] = int
    envs = [" or ".join(env_names(name, model.model_fields[name])) for name in spec.names]
    if len(envs) > 1:
        envs = [f"{env} for {name}" for env, name in zip(envs, spec.names, strict=True)]
    notes = [f"default: {_shown(default)}"] if _shown(default) else []
    notes.append("env: " + ", ".join(envs))
    text = spec.option.help or info.description or ""
    kwargs["help"] = f"{text} ({'; '.join(notes)})".replace("%", "%%")
    return kwargs


def _base_type(annotation: Any) -> Any:
    """``list[str]`` for ``Annotated[list[str], ...] | None``: the type the option parses."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        annotation = args[0]
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    return "" if default in (None, "", []) else str(default)


def _environment_only(model: type[Settings]) -> str | None:
    """The epilog naming the fields kept off the command line, and their variables."""
    lines = [
        f"{name} ({' or '.join(env_names(name, info))}): {info.description}"
        for name, info in model.model_fields.items()
        if not option_of(info).command_line
    ]
    return "Only from the environment: " + "; ".join(lines) + "." if lines else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="app-server", description="Serve Bokeh applications on asyncio and ASGI."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve Bokeh apps (as `bokeh serve` does)",
        description="Serve Bokeh apps (as `bokeh serve` does). Options given here override "
        "the environment variables their help names.",
        epilog=_environment_only(ServeSettings),
    )
    serve.add_argument(
        "files", nargs="+", metavar="PATH", help="app scripts (.py) or app directories"
    )
    add_settings_options(serve, ServeSettings)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Command-line options override the environment, which overrides the defaults."""
    options: dict[str, Any] = {}
    for spec in _specs(ServeSettings):
        value = getattr(args, spec.dest, None)
        if value is not None:
            options.update(
                spec.option.presets[value] if spec.option.presets else {spec.dest: value}
            )
    return build_settings(ServeSettings, options)


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
    return create_app(json.loads(os.environ[APPS_VARIABLE]), ServeSettings())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        routes = {route: str(path) for route, path in routes_for_paths(args.files).items()}
        app = create_app(routes, settings)  # fails here, once, on a broken app or setting
    except ConfigurationError as exc:
        print(f"app-server: {exc}", file=sys.stderr)
        return 2
    level = "debug" if settings.log_level == "trace" else settings.log_level
    options: dict[str, Any] = {
        "host": settings.address,
        "port": settings.port,
        "log_level": level,
        "log_config": logging_config(level, settings.log_format),
        "ws_max_size": settings.websocket_max_message_size,
        "ws_ping_interval": settings.keep_alive / 1000 if settings.keep_alive else None,
        "proxy_headers": settings.use_xheaders,
        "forwarded_allow_ips": "*" if settings.use_xheaders else None,
        "timeout_graceful_shutdown": 10,
        "ws_per_message_deflate": settings.websocket_compression,
    }
    if settings.num_procs > 1 or settings.dev:
        os.environ.update(_to_environment(settings, routes))
        target: Any = f"{__name__}:app_from_environment"
        options["factory"] = True
        if settings.dev:
            options["reload"] = True
            options["reload_dirs"] = sorted({_watch_dir(path) for path in args.files})
            options["reload_includes"] = ["*.py", "*.html", "*.yaml", "*.css", "*.js"]
        else:
            options["workers"] = settings.num_procs
    else:
        target = app
    if settings.show:
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


def _open_when_up(settings: ServeSettings, routes: list[str]) -> None:
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

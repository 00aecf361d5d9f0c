"""``app-server serve``: the command line of ``bokeh serve``, on uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import glob
import json
import logging
import logging.config
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.request
import webbrowser
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import partial
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import uvicorn
import yaml
from bokeh.application import Application
from bokeh.settings import PrioritizedSetting
from bokeh.settings import settings as bokeh_settings
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import ChangeReload

from . import __version__
from .app import create_app
from .applications import build_application, routes_for_paths
from .exceptions import ConfigurationError
from .index_template import render_index
from .listeners import bind, close, urls
from .logs import logging_config
from .metrics import workers_directory
from .server import AppServer
from .settings import Option, ServeSettings, Settings, build_settings, env_names, option_of
from .supervisor import Supervisor

if TYPE_CHECKING:
    from ._worker import WorkerStatus

__all__ = ["add_settings_options", "app_from_environment", "main", "settings_from_args"]

log = logging.getLogger("app_server.cli")

APPS_VARIABLE = "APP_SERVER_APPS"
ARGV_VARIABLE = "APP_SERVER_APPS_ARGV"
BOKEH_CONFIG_VARIABLE = "APP_SERVER_BOKEH_CONFIG"


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
    elif kind is bool and len(spec.names) == 2:  # --dev [FILE ...]
        kwargs["action"] = _SwitchWithValues
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(kind) is Literal:
        kwargs["choices"] = get_args(kind)
    elif get_origin(kind) is list and spec.option.repeat:
        kwargs["action"] = "append"
    elif get_origin(kind) is list:
        kwargs.update(action="extend", nargs="+")
    elif kind in (int, float):
        kwargs["type"] = kind
    envs = [" or ".join(env_names(name, model.model_fields[name])) for name in spec.names]
    if len(envs) > 1:
        envs = [f"{env} for {name}" for env, name in zip(envs, spec.names, strict=True)]
    notes = [f"default: {_shown(default)}"] if _shown(default) else []
    notes.append("env: " + ", ".join(envs))
    text = spec.option.help or info.description or ""
    kwargs["help"] = f"{text} ({'; '.join(notes)})".replace("%", "%%")
    return kwargs


class _SwitchWithValues(argparse.Action):
    """An on/off field and a list field sharing one flag, as bokeh serve's ``--dev [FILE ...]``:
    the flag turns the first on and gives the second its values; ``--no-`` turns it off."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        negative = ["--no-" + flag.removeprefix("--") for flag in option_strings]
        super().__init__([*option_strings, *negative], dest, nargs="*", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        on = not (option_string or "").startswith("--no-")
        if values and not on:
            parser.error(f"{option_string} takes no values")
        setattr(namespace, self.dest, (on, list(values or [])))


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
    parser.add_argument("-v", "--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve Bokeh apps (as `bokeh serve` does)",
        description="Serve Bokeh apps (as `bokeh serve` does). Options given here override "
        "the environment variables their help names.",
        epilog=_environment_only(ServeSettings),
    )
    serve.add_argument(
        "files",
        nargs="*",
        metavar="PATH",
        help="app scripts (.py) or app directories (none: an empty document at /, as with "
        "bokeh serve)",
    )
    # how the paths are read, not settings of the server: these are not fields
    paths = serve.add_argument_group("paths", "how the paths given are read")
    paths.add_argument(
        "--args",
        nargs=argparse.REMAINDER,
        metavar="ARG",
        default=None,
        help="the rest of the command line becomes each app's sys.argv[1:] (put it after "
        "the paths)",
    )
    paths.add_argument(
        "--glob", action="store_true", default=None, help="expand each path as a glob pattern"
    )
    paths.add_argument(
        "--use-config",
        metavar="CONFIG",
        default=None,
        help="a YAML file of settings (field names, or Bokeh's setting names such as "
        "allowed_ws_origin); they override the environment, options given here override them",
    )
    add_settings_options(serve, ServeSettings)
    return parser


# Bokeh's setting names (bokeh.settings) that are app_server fields under another name
_BOKEH_SETTING_NAMES = {"allowed_ws_origin": "allow_websocket_origin"}


def _config_file(path: str) -> dict[str, Any]:
    """The settings of a ``--use-config`` YAML file: app_server's field names, or Bokeh's
    setting names; Bokeh's other settings (``minified``, ``resources``...) go to Bokeh."""
    try:
        with open(path) as file:
            values = yaml.safe_load(file) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"--use-config: cannot read {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigurationError(f"--use-config: {path} is not a YAML mapping of settings")
    options: dict[str, Any] = {}
    for key, value in values.items():
        name = _BOKEH_SETTING_NAMES.get(key, key)
        if name in ServeSettings.model_fields:
            options[name] = value
        elif not isinstance(getattr(type(bokeh_settings), key, None), PrioritizedSetting):
            raise ConfigurationError(
                f"--use-config: {key} in {path} is neither an app_server setting "
                "(app-server serve --help) nor one of Bokeh's (bokeh settings)"
            )
    bokeh_settings.load_config(path)  # as bokeh serve does, for Bokeh's own settings
    os.environ[BOKEH_CONFIG_VARIABLE] = os.path.abspath(path)  # and in worker processes
    return options


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Command-line options override a --use-config file, which overrides the environment,
    which overrides the defaults (Bokeh's order)."""
    config = getattr(args, "use_config", None)
    options: dict[str, Any] = {} if config is None else _config_file(config)
    for spec in _specs(ServeSettings):
        value = getattr(args, spec.dest, None)
        if value is None:
            continue
        if spec.option.presets:
            options.update(spec.option.presets[value])
        elif isinstance(value, tuple):  # _SwitchWithValues: on or off, and its values
            options[spec.names[0]] = value[0]
            if value[1]:
                options[spec.names[1]] = value[1]
        else:
            options[spec.dest] = value
    return build_settings(ServeSettings, options)


def _to_environment(
    settings: Settings, routes: dict[str, str], argv: Sequence[str] = ()
) -> dict[str, str]:
    """Settings and apps as environment variables, for worker processes to rebuild them."""
    env = {APPS_VARIABLE: json.dumps(routes), ARGV_VARIABLE: json.dumps(list(argv))}
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
    if BOKEH_CONFIG_VARIABLE in os.environ:  # a --use-config file: Bokeh's settings too
        bokeh_settings.load_config(os.environ[BOKEH_CONFIG_VARIABLE])
    routes: dict[str, str] = json.loads(os.environ[APPS_VARIABLE])
    argv: list[str] = json.loads(os.environ.get(ARGV_VARIABLE, "[]"))
    return _serve_app(routes, argv, ServeSettings())


def _serve_app(routes: dict[str, str], argv: list[str], settings: ServeSettings) -> Starlette:
    """``create_app`` with each app given ``argv``, and what only ``app-server serve`` adds:
    a custom --index page and the --stats-log-frequency and --mem-log-frequency lines."""
    apps = {route: build_application(path, argv) for route, path in routes.items()}
    if not apps:  # no paths: an empty document, as bokeh serve serves
        apps = {"/": Application()}
    app = create_app(apps, settings)
    if settings.index and "/" not in routes and not settings.disable_index:
        index = partial(_custom_index, template=settings.index, server=app.state.server)
        app.router.routes[:0] = [Route(settings.prefix + "/", index)]
        if settings.prefix:
            app.router.routes.insert(1, Route(settings.prefix, index))
    _log_periodically(app, settings)
    return app


async def _custom_index(request: Request, *, template: str, server: AppServer) -> Response:
    """The --index template (Tornado's syntax, as for bokeh serve), given prefix and items."""
    routes = sorted(server.contexts)
    prefix = server.settings.prefix
    if len(routes) == 1 and not server.settings.disable_index_redirect:
        return RedirectResponse(prefix + routes[0])
    return HTMLResponse(render_index(template, prefix=prefix, items=routes))


def _log_periodically(app: Starlette, settings: ServeSettings) -> None:
    """Bokeh's periodic log lines: clients and sessions (debug), and memory, while serving."""
    server: AppServer = app.state.server
    inner = app.router.lifespan_context

    async def stats() -> None:
        while True:
            await asyncio.sleep(settings.stats_log_frequency / 1000)
            if not log.isEnabledFor(logging.DEBUG):
                continue
            log.debug("[pid %d] %d clients connected", os.getpid(), len(server.connections))
            for route, context in sorted(server.contexts.items()):
                sessions = list(context.sessions.values())
                unused = sum(1 for session in sessions if not session.connections)
                log.debug(
                    "[pid %d]   %s has %d sessions with %d unused",
                    os.getpid(), route, len(sessions), unused,
                )  # fmt: skip

    async def memory() -> None:
        while True:
            await asyncio.sleep(settings.mem_log_frequency / 1000)
            rss, vms = _memory_mb()
            log.info("[pid %d] Memory usage: %0.2f MB (RSS), %0.2f MB (VMS)", os.getpid(), rss, vms)

    @contextlib.asynccontextmanager
    async def lifespan(host: Starlette) -> AsyncIterator[Any]:
        async with inner(host) as state:
            tasks = [asyncio.create_task(stats())]
            if settings.mem_log_frequency:
                tasks.append(asyncio.create_task(memory()))
            try:
                yield state
            finally:
                for task in tasks:
                    task.cancel()

    app.router.lifespan_context = lifespan


def _memory_mb() -> tuple[float, float]:
    """The process's resident and virtual memory in MB."""
    try:
        with open("/proc/self/statm") as statm:
            vms_pages, rss_pages = (int(field) for field in statm.read().split()[:2])
        page = os.sysconf("SC_PAGE_SIZE")
        return rss_pages * page / 2**20, vms_pages * page / 2**20
    except (OSError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, B on macOS
        return peak / (2**20 if sys.platform == "darwin" else 2**10), 0.0


def _paths_after_dev(args: argparse.Namespace) -> None:
    """``--dev`` takes the words after it as files to watch, as bokeh serve's does; given
    before the only paths (``serve --dev app.py``, which bokeh serve refuses), they are the
    paths."""
    dev = getattr(args, "dev", None)
    if not args.files and isinstance(dev, tuple) and dev[0] and dev[1]:
        args.files, args.dev = dev[1], (True, [])


def _paths(args: argparse.Namespace) -> list[str]:
    """The paths given, each glob pattern expanded with --glob (as bokeh serve does)."""
    if not args.glob:
        return list(args.files)
    found = [match for pattern in args.files for match in sorted(glob.glob(pattern))]
    if not found:
        raise ConfigurationError(f"--glob: nothing matches {' '.join(args.files)}")
    return found


def _ssl_password(settings: ServeSettings) -> str | None:
    """BOKEH_SSL_PASSWORD, or asked for on the terminal when the key is encrypted (the prompt
    OpenSSL gives bokeh serve, asked once here instead of once per worker)."""
    if settings.ssl_password is not None:
        return settings.ssl_password.get_secret_value()
    key = settings.ssl_keyfile or settings.ssl_certfile
    try:
        encrypted = key is not None and b"ENCRYPTED" in Path(key).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {key}: {exc}") from exc
    if not encrypted:
        return None
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"{key} is encrypted: set BOKEH_SSL_PASSWORD (or APP_SERVER_SSL_PASSWORD), or "
            "start app-server serve on a terminal to be asked for the password"
        )
    return getpass.getpass(f"Enter PEM pass phrase for {key}: ")


def _check_ssl(settings: ServeSettings, password: str | None) -> None:
    """Load the certificate once, here, so a bad one fails with a message, not per worker."""
    assert settings.ssl_certfile is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot use the certificate and key: {exc}") from exc


def _warnings(settings: ServeSettings) -> list[str]:
    """Options of bokeh serve accepted but meaningless here, and why."""
    notes = []
    if settings.show and settings.unix_socket:
        notes.append("--show is ignored with --unix-socket: a browser cannot open a unix socket")
    for flag, value in (
        ("--websocket-compression-level", settings.websocket_compression_level),
        ("--websocket-compression-mem-level", settings.websocket_compression_mem_level),
    ):
        if value is not None:
            notes.append(
                f"{flag} is ignored: it sets Tornado's zlib compression, and uvicorn's "
                "permessage-deflate (--websocket-compression) has no such setting"
            )
    for file in settings.dev_files:
        if not settings.dev:
            notes.append(f"{file} is not watched: --dev is off")
        elif Path(file).is_dir():  # as bokeh serve: a directory's files are named one by one
            notes.append(f"--dev cannot watch directory {file}: name its files")
    return notes


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the serve command's usage, not the top-level one's
        _serve_parser(parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    _paths_after_dev(args)
    listeners: list[socket.socket] = []
    try:
        settings = settings_from_args(args)
        app_argv = list(args.args or [])
        routes = {route: str(path) for route, path in routes_for_paths(_paths(args)).items()}
        password = _ssl_password(settings) if settings.ssl_certfile else None
        if settings.ssl_certfile:
            _check_ssl(settings, password)
        # before any app code, and long before on_server_loaded: a port in use is one line
        listeners = bind(settings.address, settings.port, settings.unix_socket)
        app = _serve_app(routes, app_argv, settings)  # fails here, once, on a broken app
    except ConfigurationError as exc:
        close(listeners)
        print(f"app-server: {exc}", file=sys.stderr)
        return 2
    try:
        return _serve(settings, app, listeners, routes, app_argv, password)
    finally:
        close(listeners)
        if settings.unix_socket:
            with contextlib.suppress(OSError):
                os.remove(settings.unix_socket)


def _serve(
    settings: ServeSettings,
    app: Starlette,
    listeners: list[socket.socket],
    routes: dict[str, str],
    app_argv: list[str],
    password: str | None,
) -> int:
    """Serve on the bound ``listeners``: in this process, in --num-procs workers, or in
    --dev's reloaded process; the exit status."""
    log_config = _log_config(settings)
    logging.config.dictConfig(log_config)
    for note in _warnings(settings):
        log.warning(note)
    announce = _app_urls(settings, listeners, routes)
    if settings.show and not settings.unix_socket:
        _open_when_up(settings, listeners, sorted(routes))
    procs = settings.num_procs or os.cpu_count() or 1  # 0: one per CPU, as with bokeh serve
    if procs > 1 or settings.dev:
        if password is not None:  # asked for on the terminal: the workers need it too
            settings = settings.model_copy(update={"ssl_password": SecretStr(password)})
        os.environ.update(_to_environment(settings, routes, app_argv))
        if settings.dev:
            return _reload_on_changes(settings, listeners, routes, log_config)
        # several workers: their metrics add up in a directory they share (app_server.metrics)
        with workers_directory():
            supervisor = Supervisor(
                procs,
                listeners,
                healthcheck_timeout=settings.worker_healthcheck_timeout,
                announce=announce,
            )
            return supervisor.run()
    config = uvicorn.Config(app, **_uvicorn_options(settings, log_config, password))
    server = _GracefulServer(config, app.state.server, settings.shutdown_delay)
    server.announce = announce
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run(sockets=listeners)
    return 0 if server.started else STARTUP_FAILURE


def _app_urls(
    settings: ServeSettings, listeners: list[socket.socket], routes: Iterable[str]
) -> list[str]:
    https = settings.ssl_certfile is not None
    return urls(listeners, settings.address, routes, prefix=settings.prefix, https=https)


def _log_config(settings: ServeSettings) -> dict[str, Any]:
    """The ``dictConfig`` of --log-level, --log-format and --log-file, in every process."""
    level = "debug" if settings.log_level == "trace" else settings.log_level
    if settings.log_format in ("text", "json"):
        log_config = logging_config(level, settings.log_format)  # type: ignore[arg-type]
    else:  # a logging format string, as bokeh serve takes
        log_config = logging_config(level)
        log_config["formatters"]["default"] = {"format": settings.log_format}
    if settings.log_file:
        log_config["handlers"]["default"] = {
            "class": "logging.FileHandler",
            "formatter": "default",
            "filename": settings.log_file,
        }
    return log_config


def _uvicorn_options(
    settings: ServeSettings, log_config: dict[str, Any], password: str | None
) -> dict[str, Any]:
    """``uvicorn.Config``'s keywords (the listening sockets are bound here, not by it)."""
    options: dict[str, Any] = {
        "log_level": "debug" if settings.log_level == "trace" else settings.log_level,
        "log_config": log_config,
        "ws_max_size": settings.websocket_max_message_size,
        "ws_ping_interval": settings.keep_alive / 1000 if settings.keep_alive else None,
        # bounded where uvicorn's own are not (app_server.transport)
        "http": "app_server.transport:HttpProtocol",
        "ws": "app_server.transport:WebSocketProtocol",
        "h11_max_incomplete_event_size": settings.max_header_size,
        # X-Forwarded-* are read by app_server itself (forwarded.py), from trusted proxies only
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
        "ws_per_message_deflate": settings.websocket_compression,
    }
    if settings.ssl_certfile:
        options.update(
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_keyfile_password=password,
        )
    return options


def serve_worker(sockets: list[socket.socket], status: WorkerStatus | None = None) -> None:
    """A worker process: the apps of the environment, served on the parent's sockets. A
    --num-procs worker answers its supervisor through ``status``; --dev's has none."""
    settings = ServeSettings()
    password = settings.ssl_password.get_secret_value() if settings.ssl_password else None
    log_config = _log_config(settings)
    logging.config.dictConfig(log_config)
    app = app_from_environment()
    config = uvicorn.Config(app, **_uvicorn_options(settings, log_config, password))
    server = _GracefulServer(config, app.state.server, settings.shutdown_delay)
    if status is None:  # --dev: the reloader does not say where the apps run
        server.announce = _app_urls(settings, sockets, json.loads(os.environ[APPS_VARIABLE]))
    elif not status.attach(server):
        return  # the supervisor is gone already
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _reload_on_changes(
    settings: ServeSettings,
    listeners: list[socket.socket],
    routes: dict[str, str],
    log_config: dict[str, Any],
) -> int:
    """--dev: uvicorn's reloader restarts a worker process when an app's files change."""
    dirs = {_watch_dir(path) for path in routes.values()}
    includes = ["*.py", "*.html", "*.yaml", "*.css", "*.js"]
    for file in map(Path, settings.dev_files):  # --dev FILE...: its directory, its name
        if not file.is_dir():
            dirs.add(str(file.resolve().parent))
            includes.append(file.name)
    excludes = ["*.log"]  # a log written beside the apps is no change of theirs
    if settings.log_file:  # by name: uvicorn globs each pattern, and no absolute one
        excludes.append(Path(settings.log_file).name)
    config = uvicorn.Config(
        f"{__name__}:app_from_environment",
        factory=True,
        reload=True,
        reload_dirs=sorted(dirs),
        reload_includes=includes,
        reload_excludes=excludes,
        log_config=log_config,
    )
    ChangeReload(config, target=_dev_worker, sockets=listeners).run()
    return 0


def _dev_worker(sockets: list[socket.socket] | None = None) -> None:
    """--dev's worker process (the reloader's target, given the parent's sockets)."""
    assert sockets is not None
    serve_worker(sockets)


TICKS_PER_SECOND = 10  # uvicorn's main loop counts its 0.1 s ticks; on_tick reads the count


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, stopping as a rolling restart needs. Told to stop (SIGTERM, SIGINT):

    1. /readyz answers 503 at once; after SIGTERM, pages and websockets are still served for
       --shutdown-delay seconds, so the load balancer stops sending here first;
    2. the listener closes, and so do idle keep-alive connections (a proxy's), so no request
       arrives after this (a proxy retries such a request on another backend);
    3. websockets accepted just before are let pull their document (BokehJS reconnects a
       session it has, and fails the page of one it has not);
    4. every websocket closes with 1001, where uvicorn would use 1012, and only then does
       uvicorn run the lifespan shutdown (session and server unload hooks).

    A clean drain after SIGTERM exits 0, as bokeh serve does; uvicorn would re-raise the
    signal (exit status 143).
    """

    announce: Sequence[str] = ()  # each app's URL, logged once it serves
    # what the main loop waits on between ticks, and its loop (a stop may come from a thread)
    _stopping: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __init__(self, config: uvicorn.Config, app_server: AppServer, delay: int = 0) -> None:
        super().__init__(config)
        self.app_server = app_server
        self.delay = delay

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set from a signal handler, a thread, or a test: the main loop wakes at once."""
        self._should_exit = value
        if value and self._stopping is not None:
            loop, stop = self._stopping
            loop.call_soon_threadsafe(stop.set)

    async def main_loop(self) -> None:
        """uvicorn's, woken by a stop or once a second for the date header, where uvicorn's
        polls ``should_exit`` ten times a second: an idle server's most frequent wake-up,
        each of which costs its CPU more than the check itself."""
        stop = asyncio.Event()
        self._stopping = (asyncio.get_running_loop(), stop)  # a stop before this: on_tick sees it
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + TICKS_PER_SECOND) % 864000  # on_tick's date: every 10th
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        self._stopping = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # given sockets, uvicorn says nothing of where it runs
        for url in self.announce if self.started else ():
            log.info("running on %s", url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        server = self.app_server
        server.stopping = True
        terminated = signal.SIGTERM in self._captured_signals
        if terminated and self.delay:
            log.info("stopping in %d s; /readyz answers 503 meanwhile", self.delay)
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline and not self.force_exit:
                await asyncio.sleep(0.1)
        for listener in self.servers:
            listener.close()
        for connection in list(self.server_state.connections):
            if isinstance(connection, HttpToolsProtocol):  # app_server.transport's; not websockets
                connection.shutdown()  # idle: closed now; busy: closed after its response
        await server.settle()
        clean = await server.drain()
        await super().shutdown(sockets)
        if terminated and clean:  # stopped as asked: not killed by the signal
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def _watch_dir(path: str) -> str:
    resolved = Path(path).resolve()
    return str(resolved if resolved.is_dir() else resolved.parent)


def _open_when_up(
    settings: ServeSettings, listeners: list[socket.socket], routes: list[str]
) -> None:
    """Open a browser on the app once the server answers (for --show)."""
    path = settings.prefix + (routes[0] if len(routes) == 1 else "/")
    https = settings.ssl_certfile is not None
    base = urls(listeners, settings.address, [""], https=https)[0]  # the port bound
    # only whether it answers: a self-signed certificate is fine here
    context = ssl._create_unverified_context() if settings.ssl_certfile else None

    def wait_then_open() -> None:
        for _ in range(200):
            try:
                with urllib.request.urlopen(
                    f"{base}{settings.prefix}/healthz", timeout=1, context=context
                ):
                    pass
            except OSError:
                time.sleep(0.1)
                continue
            webbrowser.open(base + path)
            return

    threading.Thread(target=wait_then_open, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

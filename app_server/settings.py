"""The settings: ``Settings`` for the app under any ASGI host, ``ServeSettings`` for
``app-server serve``, whose command line is generated from these fields (see ``cli.py``)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from bokeh.util.paths import server_path
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .exceptions import ConfigurationError
from .logs import LogFormat

__all__ = [
    "LogLevel",
    "Option",
    "ServeSettings",
    "Settings",
    "app_settings",
    "build_settings",
    "env_names",
    "option_of",
    "serve_only",
]

# "None" as bokeh serve takes it (--log-level None): no level given, so the default, info
LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical", "None"]

_StrList = Annotated[list[str], NoDecode]

_T = TypeVar("_T", bound="Settings")


@dataclass(frozen=True)
class Option:
    """How a field appears on ``app-server serve``'s command line, where a plain
    ``--field-name`` is not enough; kept on the field so each option is declared once."""

    flag: str = ""  # the option's name when it is not --field-name (Bokeh's spelling)
    metavar: str | None = None
    repeat: bool = False  # a list given one value per flag (else a flag takes several)
    help: str = ""  # the help of an option several fields share (one with presets)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # choice: values
    instead: str = ""  # a serve-only field: what to use under another ASGI server
    command_line: bool = True  # False: from the environment only (a secret kept out of `ps`)


def option_of(info: FieldInfo) -> Option:
    """The field's ``Option`` marker, or the plain one."""
    return next((item for item in info.metadata if isinstance(item, Option)), Option())


def _env(name: str, *bokeh_names: str) -> Any:
    """Read ``APP_SERVER_<NAME>``, then Bokeh's own variables (keywords use the field name)."""
    return AliasChoices(f"APP_SERVER_{name.upper()}", *bokeh_names)


def env_names(name: str, info: FieldInfo) -> list[str]:
    """The environment variables a field is read from, in the order they are tried."""
    if isinstance(info.validation_alias, AliasChoices):
        return [choice for choice in info.validation_alias.choices if isinstance(choice, str)]
    return [f"APP_SERVER_{name.upper()}"]


_SESSION_IDS = Option(
    flag="--session-ids",
    help="session id policy: signed ids and tokens need BOKEH_SECRET_KEY; "
    "external-signed ids are signed elsewhere and only checked here",
    presets={
        "unsigned": {"sign_sessions": False, "generate_session_ids": True},
        "signed": {"sign_sessions": True, "generate_session_ids": True},
        "external-signed": {"sign_sessions": True, "generate_session_ids": False},
    },
)

_ManageProcessMemory = Annotated[
    bool,
    Field(
        description="let app_server tune the process's garbage collector and return freed "
        "memory to the OS (gc.freeze at startup, coalesced collections and malloc_trim after "
        "sessions are discarded); on for app-server serve, off by default when mounted or run "
        "by another ASGI server, which may own the process"
    ),
]


class Settings(BaseSettings):
    """What the ASGI app itself uses, under any host: ``create_app`` keywords,
    ``APP_SERVER_*`` (and Bokeh's ``BOKEH_*``) variables, and most ``app-server serve`` options."""

    model_config = SettingsConfigDict(
        env_prefix="APP_SERVER_", populate_by_name=True, extra="forbid", frozen=True
    )

    prefix: Annotated[str, Option(metavar="PREFIX")] = Field(
        "", description="URL prefix for every route, e.g. /dash"
    )
    allow_websocket_origin: Annotated[_StrList, Option(metavar="HOST[:PORT]", repeat=True)] = Field(
        default_factory=list,
        validation_alias=_env("allow_websocket_origin", "BOKEH_ALLOW_WS_ORIGIN"),
        description="a host whose pages may open websockets here (repeatable; * allows any); "
        "pages served by this server itself are always allowed",
    )
    use_xheaders: bool = Field(
        False,
        description="trust X-Forwarded-* headers for the client's scheme and address and the "
        "public host websocket origins are checked against (only behind a reverse proxy)",
    )
    forwarded_allow_ips: Annotated[_StrList, Option(metavar="IPS")] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        validation_alias=_env("forwarded_allow_ips", "FORWARDED_ALLOW_IPS"),
        description="with --use-xheaders, the proxies (addresses or networks, comma separated; "
        "* for any) whose X-Forwarded-* headers are believed; a unix socket's peers always are",
    )
    disable_index: bool = Field(False, description="no index page of the apps at /")
    disable_index_redirect: bool = Field(
        False, description="list a single app at / instead of redirecting to it"
    )

    secret_key: Annotated[SecretStr | None, Option(command_line=False)] = Field(
        None,
        validation_alias=_env("secret_key", "BOKEH_SECRET_KEY"),
        description="signs session ids and tokens (make one with `bokeh secret`), the same in "
        "every process; read from the environment only, where no process list shows it",
    )
    sign_sessions: Annotated[bool, _SESSION_IDS] = Field(
        False,
        validation_alias=_env("sign_sessions", "BOKEH_SIGN_SESSIONS"),
        description="sign session ids and tokens with the secret key",
    )
    generate_session_ids: Annotated[bool, _SESSION_IDS] = Field(
        True, description="create session ids here (off: pages must bring signed ones)"
    )
    session_token_expiration: Annotated[int, Option(metavar="SECONDS")] = Field(
        300, gt=0, description="seconds a page's token may open a session"
    )
    on_session_lost: Literal["reload", "notify", "none"] = Field(
        "reload",
        description="what a page does once its session cannot come back (its websocket was "
        "lost and its token has expired, or every reconnect failed): reload says so, then "
        "reloads once the server answers (a fresh token, through login if there is one); "
        "notify says so with a Reload button; none leaves BokehJS's own notice",
    )

    check_unused_sessions: Annotated[int, Option(metavar="MS")] = Field(
        17_000, gt=0, description="milliseconds between sweeps for sessions to discard"
    )
    unused_session_lifetime: Annotated[int, Option(metavar="MS")] = Field(
        15_000, ge=0, description="milliseconds a session never connected to is kept"
    )
    disconnected_session_lifetime: Annotated[int, Option(metavar="MS")] = Field(
        5_000,
        ge=0,
        description="milliseconds a session outlives its last websocket, for reconnects",
    )
    websocket_max_message_size: Annotated[int, Option(metavar="BYTES")] = Field(
        20 * 1024 * 1024,
        gt=0,
        description="largest websocket message accepted; larger ones close the socket with 1009",
    )
    outbound_queue_size: Annotated[int, Option(metavar="MESSAGES")] = Field(
        1024, gt=0, description="messages a client may lag behind before it is disconnected"
    )
    outbound_queue_bytes: Annotated[int, Option(metavar="BYTES")] = Field(
        16 * 1024 * 1024,
        gt=0,
        description="bytes a client may lag behind before it is disconnected (one message "
        "is always taken when nothing is pending, however large)",
    )
    max_body_size: Annotated[int, Option(metavar="BYTES")] = Field(
        1024 * 1024,
        gt=0,
        description="largest request body app_server reads (login and logout forms); larger "
        "ones are refused with 413 before they are held",
    )
    num_threads: Annotated[int, Option(metavar="N")] = Field(
        4, gt=0, description="threads of the executor for unlocked callbacks"
    )
    slow_callback_threshold: Annotated[int, Option(metavar="MS")] = Field(
        100,
        ge=0,
        description="milliseconds a session callback may hold the event loop before it is "
        "logged (a warning naming the app, session and callback) and counted in /metrics; "
        "0 is off",
    )

    max_sessions_per_app: Annotated[int | None, Option(metavar="N")] = Field(
        None, gt=0, description="sessions an app may hold; more are refused with 503"
    )
    max_sessions_per_client: Annotated[int | None, Option(metavar="N")] = Field(
        None, gt=0, description="sessions one client address may hold; more are refused with 429"
    )

    auth_module: Annotated[str | None, Option(metavar="PATH")] = Field(
        None,
        validation_alias=_env("auth_module", "BOKEH_AUTH_MODULE"),
        description="a Bokeh auth module (get_user, login_url, login and logout handlers)",
    )
    cookie_secret: Annotated[SecretStr | None, Option(metavar="SECRET")] = Field(
        None,
        validation_alias=_env("cookie_secret", "BOKEH_COOKIE_SECRET"),
        description="signs cookies (get_secure_cookie, set_secure_cookie)",
    )
    xsrf_cookies: Annotated[bool, Option(flag="--enable-xsrf-cookies")] = Field(
        False,
        validation_alias=_env("xsrf_cookies", "BOKEH_XSRF_COOKIES"),
        description="require the _xsrf cookie's value with POSTs to login and logout handlers",
    )
    security_headers: bool = Field(
        True,
        description="send X-Content-Type-Options: nosniff and a Referrer-Policy with every "
        "response",
    )
    content_security_policy: Annotated[str, Option(metavar="POLICY")] = Field(
        "",
        description="the Content-Security-Policy of HTML pages: none by default, as with bokeh "
        "serve, so apps may load styles, fonts, scripts and iframes from other origins; "
        "'strict' allows this server's own resources only (see SECURITY.md)",
    )
    metrics: Literal["public", "authenticated", "off"] = Field(
        "public",
        description="who may read /metrics: anyone; only a user of the auth module (or of an "
        "ASGI authentication middleware), others get 403; or nobody (404)",
    )

    include_headers: Annotated[_StrList | None, Option(metavar="NAME")] = Field(
        None, description="only these request headers reach session_context.request"
    )
    exclude_headers: Annotated[_StrList | None, Option(metavar="NAME")] = Field(
        None, description="request headers kept from session_context.request"
    )
    include_cookies: Annotated[_StrList | None, Option(metavar="NAME")] = Field(
        None, description="only these cookies reach session_context.request"
    )
    exclude_cookies: Annotated[_StrList | None, Option(metavar="NAME")] = Field(
        None, description="cookies kept from session_context.request"
    )

    ico_path: Annotated[str, Option(metavar="PATH")] = Field(
        "default",
        validation_alias=_env("ico_path", "BOKEH_ICO_PATH"),
        description="the favicon.ico served: a .ico file, default (Bokeh's) or none (no icon)",
    )

    manage_process_memory: _ManageProcessMemory = False

    @field_validator(
        "allow_websocket_origin",
        "forwarded_allow_ips",
        "include_headers",
        "exclude_headers",
        "include_cookies",
        "exclude_cookies",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """``a,b`` as two items, in a variable and in each value of a repeated option."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ConfigurationError(
                        f"forwarded_allow_ips: {entry!r} is not an address or a network "
                        "(give 10.0.0.5, 10.0.0.0/8, ::1, or * for any)"
                    ) from None
        return value

    @field_validator("ico_path")
    @classmethod
    def _check_ico_path(cls, value: str) -> str:
        if value.lower() in ("default", "none"):
            return value.lower()
        if value.lower() == "default-dev":  # Bokeh's development icon (BOKEH_DEV)
            return str(server_path() / "views" / "bokeh-dev.ico")
        if not Path(value).expanduser().is_file():
            raise ConfigurationError(f"ico_path: no such file {value} (or give default or none)")
        return str(Path(value).expanduser().resolve())

    @field_validator("prefix")
    @classmethod
    def _normalize_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"/{value}" if value else ""

    @model_validator(mode="after")
    def _check_signing(self) -> Settings:
        if self.sign_sessions and self.secret_key is None:
            raise ConfigurationError(
                "sign_sessions needs a secret key: generate one with `bokeh secret` "
                "and set BOKEH_SECRET_KEY (or APP_SERVER_SECRET_KEY)"
            )
        if self.include_headers is not None and self.exclude_headers is not None:
            raise ConfigurationError("use include_headers or exclude_headers, not both")
        if self.include_cookies is not None and self.exclude_cookies is not None:
            raise ConfigurationError("use include_cookies or exclude_cookies, not both")
        return self

    @property
    def secret_key_bytes(self) -> bytes | None:
        return None if self.secret_key is None else self.secret_key.get_secret_value().encode()


_DEV = Option(
    flag="--dev",
    metavar="FILE",
    help="restart when the apps' .py, .html, .yaml, .css or .js files change, or one of the "
    "FILEs given (as bokeh serve's --dev FILE...; put the app paths before it)",
    instead="reload with your server (uvicorn --reload, --reload-include)",
)


class ServeSettings(Settings):
    """``app-server serve``'s settings: the app's, plus those of the uvicorn it runs, which
    mean nothing when app_server is mounted or run by another ASGI server."""

    address: Annotated[
        str, Option(metavar="HOST", instead="set your server's address (uvicorn --host)")
    ] = Field("127.0.0.1", description="address to listen on")
    port: Annotated[
        int, Option(metavar="PORT", instead="set your server's port (uvicorn --port)")
    ] = Field(5006, ge=0, le=65535, description="port to listen on; 0 picks a free one")
    log_level: Annotated[
        LogLevel, Option(instead="set your server's log level (uvicorn --log-level)")
    ] = Field("info", description="the least important log lines shown")
    log_format: Annotated[
        LogFormat | str,
        Option(
            metavar="text|json|FORMAT",
            instead="configure your server's logging (uvicorn --log-config; "
            "app_server.logs.logging_config(level, 'json') makes a config)",
        ),
    ] = Field(
        "text",
        description="text: plain lines; json: JSON lines with app and session_id fields; or a "
        "logging format string, as bokeh serve takes ('%(asctime)s %(message)s')",
    )
    max_header_size: Annotated[
        int,
        Option(
            metavar="BYTES",
            instead="run uvicorn with --http app_server.transport:HttpProtocol "
            "--h11-max-incomplete-event-size BYTES (see README)",
        ),
    ] = Field(
        64 * 1024,
        ge=1024,
        description="largest request line and headers; larger ones are refused with 431 as "
        "they arrive (Tornado's limit)",
    )
    num_procs: Annotated[
        int, Option(metavar="N", instead="start workers with your server (uvicorn --workers)")
    ] = Field(1, ge=0, description="worker processes on one port; 0 starts one per CPU")
    worker_healthcheck_timeout: Annotated[
        float,
        Option(
            metavar="SECONDS",
            instead="set your server's (uvicorn --timeout-worker-healthcheck, gunicorn --timeout)",
        ),
    ] = Field(
        30,
        gt=0,
        description="with --num-procs, seconds a worker may leave its supervisor's ping "
        "unanswered before it is killed and replaced",
    )
    dev: Annotated[bool, _DEV] = Field(
        False, description="restart when the apps' .py, .html, .yaml, .css or .js files change"
    )
    dev_files: Annotated[_StrList, _DEV] = Field(
        [], description="more files whose changes restart the server with --dev"
    )
    show: Annotated[bool, Option(instead="open a browser yourself")] = Field(
        False, description="open the app in a browser once the server is up"
    )
    keep_alive: Annotated[
        int,
        Option(
            metavar="MS",
            instead="set your server's websocket pings (uvicorn --ws-ping-interval SECONDS)",
        ),
    ] = Field(37_000, ge=0, description="milliseconds between websocket pings; 0 is off")
    websocket_compression: Annotated[
        bool, Option(instead="set it on your server (uvicorn --ws-per-message-deflate)")
    ] = Field(
        False, description="offer permessage-deflate (costs CPU per message; off, as in Bokeh)"
    )

    unix_socket: Annotated[
        str | None, Option(metavar="PATH", instead="bind your server to it (uvicorn --uds)")
    ] = Field(
        None,
        description="listen on this unix socket instead of an address and port (no --address, "
        "--port or --ssl-* with it; check websocket origins at the proxy)",
    )
    ssl_certfile: Annotated[
        str | None,
        Option(metavar="CERTFILE", instead="give it to your server (uvicorn --ssl-certfile)"),
    ] = Field(
        None,
        validation_alias=_env("ssl_certfile", "BOKEH_SSL_CERTFILE"),
        description="serve HTTPS and WSS with this certificate (PEM; may hold the key too)",
    )
    ssl_keyfile: Annotated[
        str | None,
        Option(metavar="KEYFILE", instead="give it to your server (uvicorn --ssl-keyfile)"),
    ] = Field(
        None,
        validation_alias=_env("ssl_keyfile", "BOKEH_SSL_KEYFILE"),
        description="the certificate's private key; an encrypted key's password comes from "
        "BOKEH_SSL_PASSWORD, else it is asked for on the terminal",
    )
    ssl_password: Annotated[
        SecretStr | None,
        Option(
            command_line=False, instead="give it to your server (uvicorn --ssl-keyfile-password)"
        ),
    ] = Field(
        None,
        validation_alias=_env("ssl_password", "BOKEH_SSL_PASSWORD"),
        description="decrypts an encrypted --ssl-keyfile; read from the environment only (else "
        "asked for on the terminal)",
    )
    log_file: Annotated[
        str | None,
        Option(metavar="PATH", instead="configure your server's logging (uvicorn --log-config)"),
    ] = Field(None, description="append the log to this file instead of standard error")
    stats_log_frequency: Annotated[
        int, Option(metavar="MS", instead="read /metrics, or log from your own task")
    ] = Field(
        15_000,
        gt=0,
        description="milliseconds between debug log lines of clients connected and each app's "
        "sessions (shown with --log-level debug)",
    )
    mem_log_frequency: Annotated[
        int, Option(metavar="MS", instead="read /metrics, or log from your own task")
    ] = Field(
        0, ge=0, description="milliseconds between log lines of the process's memory; 0 is off"
    )
    shutdown_delay: Annotated[
        int,
        Option(
            metavar="SECONDS",
            instead="delay the stop in your orchestrator (a Kubernetes preStop hook) and read "
            "/readyz",
        ),
    ] = Field(
        0,
        ge=0,
        description="seconds between SIGTERM and closing the listener: /readyz answers 503 at "
        "once while pages and websockets are still served, so a load balancer stops sending "
        "here first (a Kubernetes pre-stop delay); Ctrl-C stops at once",
    )
    index: Annotated[
        str | None, Option(metavar="PATH", instead="serve your own page at / from the host app")
    ] = Field(
        None,
        description="a template for the index of apps at /, given prefix and items (the apps' "
        "routes), in Tornado's syntax as with bokeh serve (rendered with Jinja2)",
    )
    websocket_compression_level: Annotated[
        int | None, Option(metavar="LEVEL", instead="uvicorn cannot set it either")
    ] = Field(
        None,
        description="accepted for bokeh serve's command lines and ignored with a warning: "
        "uvicorn's permessage-deflate has no compression level setting",
    )
    websocket_compression_mem_level: Annotated[
        int | None, Option(metavar="LEVEL", instead="uvicorn cannot set it either")
    ] = Field(
        None,
        description="accepted for bokeh serve's command lines and ignored with a warning: "
        "uvicorn's permessage-deflate has no memory level setting",
    )

    manage_process_memory: _ManageProcessMemory = True

    @field_validator("log_level")
    @classmethod
    def _no_level_is_info(cls, value: str) -> str:
        return "info" if value == "None" else value

    @field_validator("dev_files", mode="before")
    @classmethod
    def _split_files(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item for item in value.split(",") if item]
        return value

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        if value in ("text", "json"):
            return value
        try:
            logging.Formatter(value, validate=True)
        except ValueError as exc:
            raise ConfigurationError(
                f"log_format: text, json or a logging format string, not {value!r} ({exc})"
            ) from exc
        return value

    @field_validator("ssl_certfile", "ssl_keyfile", "log_file", "index", "unix_socket")
    @classmethod
    def _expand_path(cls, value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser())

    @model_validator(mode="after")
    def _check_serving(self) -> ServeSettings:
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigurationError("--ssl-keyfile needs --ssl-certfile")
        if self.unix_socket is not None:
            given = [
                flag
                for flag, value in (
                    ("--port", self.port != 5006),
                    ("--address", self.address != "127.0.0.1"),
                    ("--ssl-certfile", self.ssl_certfile),
                    ("--ssl-keyfile", self.ssl_keyfile),
                )
                if value
            ]
            if given:
                raise ConfigurationError(
                    f"{', '.join(given)} cannot be used with --unix-socket (as in bokeh serve)"
                )
        if self.index is not None and not Path(self.index).is_file():
            raise ConfigurationError(f"index: no such template {self.index}")
        return self


def serve_only() -> list[str]:
    """The fields only ``app-server serve`` uses."""
    return [name for name in ServeSettings.model_fields if name not in Settings.model_fields]


def build_settings(model: type[_T], options: Mapping[str, Any]) -> _T:
    """``model(**options)``, its validation errors turned into one ``ConfigurationError``."""
    try:
        return model(**options)
    except ValidationError as exc:
        raise ConfigurationError("; ".join(_explain(error) for error in exc.errors())) from exc


def _explain(error: ErrorDetails) -> str:
    """One error in the user's terms: the setting's name and what is wrong with it."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigurationError):
        return str(cause)
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{name}: no such setting (the settings are the fields of app_server.Settings)"
    return f"{name}: {error['msg']}"


def app_settings(settings: Settings | None, options: Mapping[str, Any]) -> Settings:
    """The settings ``create_app`` uses: ``settings`` (a ``ServeSettings`` stays one) with
    ``options`` on top; a serve-only option is refused with what to do instead."""
    model = Settings if settings is None else type(settings)
    for name in sorted(set(options) - set(model.model_fields)):
        info = ServeSettings.model_fields.get(name)
        if info is not None:
            flag = option_of(info).flag or "--" + name.replace("_", "-")
            raise ConfigurationError(
                f"{name} is a setting of `app-server serve`'s own server, not of the app: "
                f"when the app is mounted or run by another ASGI server, "
                f"{option_of(info).instead}; or serve it with `app-server serve {flag}`"
            )
    if settings is not None and not options:
        return settings
    base = {} if settings is None else dict(settings)
    return build_settings(model, {**base, **options})

"""The one settings model, filled from the command line, the environment or ``create_app``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .exceptions import ConfigurationError

__all__ = ["LogLevel", "Settings"]

LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical"]

_StrList = Annotated[list[str], NoDecode]


def _env(name: str, *bokeh_names: str) -> Any:
    """Accept the field name, ``APP_SERVER_<NAME>`` and Bokeh's own variable names."""
    return AliasChoices(name, f"APP_SERVER_{name.upper()}", *bokeh_names)


class Settings(BaseSettings):
    """How the server behaves; every option of ``app-server serve`` is a field here."""

    model_config = SettingsConfigDict(
        env_prefix="APP_SERVER_", populate_by_name=True, extra="forbid", frozen=True
    )

    address: str = "127.0.0.1"
    port: int = Field(5006, ge=0, le=65535)
    prefix: str = ""
    allow_websocket_origin: _StrList = Field(
        default_factory=list,
        validation_alias=_env("allow_websocket_origin", "BOKEH_ALLOW_WS_ORIGIN"),
    )
    use_xheaders: bool = False
    disable_index: bool = False
    disable_index_redirect: bool = False
    log_level: LogLevel = "info"

    secret_key: SecretStr | None = Field(
        None, validation_alias=_env("secret_key", "BOKEH_SECRET_KEY")
    )
    sign_sessions: bool = Field(
        False, validation_alias=_env("sign_sessions", "BOKEH_SIGN_SESSIONS")
    )
    generate_session_ids: bool = True
    session_token_expiration: int = Field(300, gt=0, description="seconds")

    keep_alive: int = Field(
        37_000, ge=0, description="milliseconds between websocket pings; 0 is off"
    )
    check_unused_sessions: int = Field(17_000, gt=0, description="milliseconds")
    unused_session_lifetime: int = Field(
        15_000, ge=0, description="milliseconds a session never connected to is kept"
    )
    disconnected_session_lifetime: int = Field(
        5_000,
        ge=0,
        description="milliseconds a session is kept for a reconnect after its last tab closed",
    )
    websocket_max_message_size: int = Field(20 * 1024 * 1024, gt=0, description="bytes")
    outbound_queue_size: int = Field(
        1024, gt=0, description="messages a client may lag behind before it is disconnected"
    )
    num_threads: int = Field(4, gt=0, description="threads of the executor for unlocked callbacks")
    websocket_compression: bool = Field(
        False, description="offer permessage-deflate (costs CPU per message; off, as in Bokeh)"
    )

    max_sessions_per_app: int | None = Field(
        None, gt=0, description="sessions an app may hold; more are refused with 503"
    )
    max_sessions_per_client: int | None = Field(
        None, gt=0, description="sessions one client address may hold; more are refused with 429"
    )

    auth_module: str | None = Field(None, validation_alias=_env("auth_module", "BOKEH_AUTH_MODULE"))
    cookie_secret: SecretStr | None = Field(
        None, validation_alias=_env("cookie_secret", "BOKEH_COOKIE_SECRET")
    )
    xsrf_cookies: bool = Field(
        False,
        validation_alias=_env("xsrf_cookies", "BOKEH_XSRF_COOKIES"),
        description="require the _xsrf cookie's value with POSTs to login and logout handlers",
    )
    security_headers: bool = True
    content_security_policy: str = (
        "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'"
    )

    include_headers: _StrList | None = None
    exclude_headers: _StrList | None = None
    include_cookies: _StrList | None = None
    exclude_cookies: _StrList | None = None

    @field_validator(
        "allow_websocket_origin",
        "include_headers",
        "exclude_headers",
        "include_cookies",
        "exclude_cookies",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

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

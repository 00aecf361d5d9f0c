"""app_server: the Bokeh server rebuilt on asyncio and ASGI."""

from .app import create_app, mounted_lifespan
from .exceptions import (
    AppServerError,
    ConfigurationError,
    DocumentAccessError,
    SessionError,
    SessionLimitError,
)
from .settings import Settings
from .shared import load_once, shared

__all__ = [
    "AppServerError",
    "ConfigurationError",
    "DocumentAccessError",
    "SessionError",
    "SessionLimitError",
    "Settings",
    "create_app",
    "load_once",
    "mounted_lifespan",
    "shared",
]

__version__ = "0.1.0"

"""app_server: the Bokeh server rebuilt on asyncio and ASGI."""

from .app import create_app
from .exceptions import AppServerError, ConfigurationError, DocumentAccessError, SessionError
from .settings import Settings

__all__ = [
    "AppServerError",
    "ConfigurationError",
    "DocumentAccessError",
    "SessionError",
    "Settings",
    "create_app",
]

__version__ = "0.1.0"

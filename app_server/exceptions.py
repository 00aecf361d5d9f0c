"""The exceptions app_server raises, all under one root.

AppServerError
 ├── ConfigurationError   settings or an application that cannot be used as given
 ├── SessionError         a session that does not exist or was already discarded
 │    └── SessionLimitError   too many sessions for the app or for one client address
 └── DocumentAccessError  a document touched from the wrong thread or without its lock
"""

from __future__ import annotations

__all__ = [
    "AppServerError",
    "ConfigurationError",
    "DocumentAccessError",
    "SessionError",
    "SessionLimitError",
]


class AppServerError(Exception):
    """Root of every error app_server raises on purpose."""


class ConfigurationError(AppServerError, ValueError):
    """The settings or an application cannot be used; the message says what to change."""


class SessionError(AppServerError):
    """The session is unknown or already discarded."""


class SessionLimitError(SessionError):
    """A new session would exceed a configured limit; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DocumentAccessError(AppServerError, RuntimeError):
    """A document was changed where that is unsafe; the message names the fix."""

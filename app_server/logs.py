"""Logging setup: for ``app-server serve``, readable lines or JSON in every worker process;
under another host (``uvicorn module:app``, gunicorn), the host's own handlers."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

__all__ = ["JsonFormatter", "LogFormat", "follow_host_logging", "logging_config"]

LogFormat = Literal["text", "json"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields (``session_id``, ``app``, ...) are kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def logging_config(level: str, log_format: LogFormat = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for app_server's and uvicorn's loggers."""
    level = "DEBUG" if level.lower() == "trace" else level.upper()
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": f"{__name__}.JsonFormatter"}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "app_server": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
            "bokeh": {"handlers": ["default"], "level": level, "propagate": False},
            # --dev's file watcher logs every change it sees, a log file's own lines included
            "watchfiles": {"level": "WARNING"},
        },
        "root": {"handlers": ["default"], "level": level},
    }


# the loggers of the ASGI servers that configure only their own (uvicorn, gunicorn's workers)
_HOST_LOGGERS = ("uvicorn.error", "gunicorn.error")


def follow_host_logging() -> None:
    """Give app_server's lines the host's handlers and level when nothing would show them.

    ``uvicorn module:app`` and gunicorn configure their own loggers, not the root one, so the
    lines of app_server's loggers (which propagate) reach no handler, and Python prints only
    warnings, bare. When no handler is there for them, app_server's logger takes the handlers
    (format, stream or file) and level of the host's error log. A host that configures the
    root logger, or app_server's, is left alone.
    """
    logger = logging.getLogger("app_server")
    if logger.hasHandlers():
        return
    for name in _HOST_LOGGERS:
        if name not in logging.root.manager.loggerDict:
            continue
        host: logging.Logger | None = logging.getLogger(name)
        while host is not None and host is not logging.root:
            if host.handlers:
                for handler in host.handlers:
                    logger.addHandler(handler)
                if logger.level == logging.NOTSET:
                    logger.setLevel(logging.getLogger(name).getEffectiveLevel())
                return
            host = host.parent if host.propagate else None

"""Lifecycle hooks; each event is logged and, for tests, appended to $LIFECYCLE_LOG."""

import logging
import os

log = logging.getLogger("lifecycle_app")


def _record(event):
    log.info("lifecycle: %s", event)
    path = os.environ.get("LIFECYCLE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(event + "\n")


def on_server_loaded(server_context):
    _record("server_loaded")


def on_server_unloaded(server_context):
    _record("server_unloaded")


async def on_session_created(session_context):
    # a coroutine hook: app_server awaits it before the app code runs
    _record(f"session_created {session_context.id}")


def on_session_destroyed(session_context):
    _record(f"session_destroyed {session_context.id}")

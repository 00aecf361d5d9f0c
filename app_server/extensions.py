"""The ASGI extensions that app_server's own transport (:mod:`app_server.transport`) offers.

The app uses one only when the scope's ``extensions`` names it, so under any other server it
speaks plain ASGI. This module imports nothing: the app does not load uvicorn for its names.
"""

__all__ = ["FRAMES"]

# a "websocket.send" whose FRAMES key holds all of one message's frames, written at once; the
# extension's "write" entry, ``write(frames) -> bool``, writes them without a send at all when
# the transport takes them now (True), which a message that finds nothing queued tries first
FRAMES = "app_server.frames"

"""Serve Bokeh apps with bokeh's own ``BokehASGI`` (bokeh >= 3.10) under uvicorn.

``python -m bench.asgi_launcher APP.py [APP.py ...] --port P`` serves each script at
``/<name>``, as ``bokeh serve`` does. The options are the ones the bench needs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.asgi_launcher")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--check-unused-sessions", type=int, default=17_000, metavar="MS")
    parser.add_argument("--unused-session-lifetime", type=int, default=15_000, metavar="MS")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()

    import uvicorn
    from bokeh.server.asgi import BokehASGI

    apps = {f"/{Path(f).stem}": str(Path(f).resolve()) for f in args.files}
    app = BokehASGI(
        apps,
        check_unused_sessions_milliseconds=args.check_unused_sessions,
        unused_session_lifetime_milliseconds=args.unused_session_lifetime,
    )
    logging.basicConfig(level=args.log_level.upper())
    # uvicorn's defaults, as `uvicorn module:app` would run it.
    uvicorn.run(app, host=args.address, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()

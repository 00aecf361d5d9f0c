"""pid_app.py as an importable ASGI app, for gunicorn's workers."""

from pathlib import Path

from app_server import create_app

app = create_app({"/pid_app": Path(__file__).resolve().parent / "pid_app.py"})

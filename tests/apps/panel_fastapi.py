"""A FastAPI host with the Panel test apps mounted under ``/panel`` (tests/test_panel.py).

uvicorn tests.apps.panel_fastapi:api
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from app_server import create_app
from app_server.app import mounted_lifespan

HERE = Path(__file__).resolve().parent

panel_apps = create_app(
    {f"/{name}": HERE / f"{name}.py" for name in ("panel_widgets", "panel_periodic")}
)
api = FastAPI(lifespan=mounted_lifespan(panel_apps))
api.mount("/panel", panel_apps)


@api.get("/")
def home() -> dict[str, str]:
    return {"panel": "/panel/panel_widgets"}

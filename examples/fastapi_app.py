"""A FastAPI project that hosts Bokeh apps with app_server.

    uvicorn examples.fastapi_app:app --port 8000
    python examples/fastapi_app.py

- two Bokeh apps mounted under ``/dash`` (``/dash/demo``, ``/dash/lifecycle_app``, an index at
  ``/dash/``, BokehJS at ``/dash/static/...``): every URL follows the mount point and any ASGI
  ``root_path`` (``uvicorn --root-path /site``);
- the host's own routes (``/``, ``/api/status``), a middleware of its own, and a FastAPI
  dependency (``current_user``) guarding ``/api/me`` and ``/report``;
- ``/report``: a Jinja page of the host that embeds the demo with
  ``bokeh.embed.server_document``; its websocket comes back to the mount on the same origin.

Lifecycle hooks. Starlette and FastAPI send lifespan events to the host only, never to mounted
apps. Without help a mounted app_server runs ``on_server_loaded`` on its first request and
``on_server_unloaded`` never; the one line a host needs is ``lifespan=mounted_lifespan(dash)``
(or ``async with mounted_lifespan(dash):`` inside a lifespan of its own, see ``host_lifespan``).
Each hook then runs exactly once per process, at startup and at shutdown.

Guarding the Bokeh apps themselves: FastAPI dependencies apply to routes, not to mounted apps;
guard a mount with an ASGI middleware, which sees its websocket handshakes too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated

from bokeh.embed import server_document
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import DictLoader, Environment, select_autoescape

from app_server import create_app
from app_server.app import mounted_lifespan

HERE = Path(__file__).resolve().parent

dash = create_app({"/demo": HERE / "demo.py", "/lifecycle_app": HERE / "lifecycle_app"})


@contextlib.asynccontextmanager
async def host_lifespan(api: FastAPI) -> AsyncIterator[None]:
    """The host's own startup and shutdown, with the Bokeh apps' hooks inside."""
    api.state.started = True  # the host's own startup work goes here
    async with mounted_lifespan(dash):  # the one line: on_server_loaded / on_server_unloaded
        yield


app = FastAPI(title="app_server in FastAPI", lifespan=host_lifespan)
app.mount("/dash", dash, name="dash")
# (with no lifespan of its own: FastAPI(lifespan=mounted_lifespan(dash)))


@app.middleware("http")
async def served_by(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """The host's middleware runs for the mounted apps' pages too."""
    response = await call_next(request)
    response.headers["X-Served-By"] = "fastapi-host"
    return response


def current_user(
    user: Annotated[str | None, Cookie()] = None,
    x_user: Annotated[str | None, Header()] = None,
) -> str:
    """A stand-in for real authentication: the ``user`` cookie or the ``X-User`` header."""
    name = user or x_user
    if not name:
        raise HTTPException(401, "sign in first: send a user cookie or an X-User header")
    return name


templates = Jinja2Templates(
    env=Environment(
        loader=DictLoader(
            {
                "home.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
<ul>
  <li><a href="{{ url_for('dash', path='/demo') }}">the demo app</a></li>
  <li><a href="{{ url_for('dash', path='/lifecycle_app') }}">the lifecycle app</a></li>
  <li><a href="{{ url_for('dash', path='/') }}">every Bokeh app</a></li>
  <li><a href="{{ url_for('report') }}">a report embedding the demo</a> (signed in)</li>
</ul></body></html>""",
                "report.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
<p class="user">Prepared for {{ user }}.</p>
{{ bokeh_script | safe }}
</body></html>""",
            }
        ),
        autoescape=select_autoescape(),
    )
)


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "home.html", {"title": "Dashboards"})


@app.get("/favicon.ico", include_in_schema=False)
async def favicon(request: Request) -> RedirectResponse:
    # Bokeh's pages name no icon, so browsers ask the site's root: lend them app_server's
    return RedirectResponse(request.url_for("dash", path="/favicon.ico"))


@app.get("/api/status")
async def status() -> dict[str, object]:
    return {"status": "ok", "bokeh_apps": sorted(dash.state.server.contexts)}


@app.get("/api/me")
async def me(user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
    return {"user": user}


@app.get("/report", response_class=HTMLResponse)
async def report(request: Request, user: Annotated[str, Depends(current_user)]) -> HTMLResponse:
    # url_for follows the mount and the root_path, so the script and its websocket do too
    script = server_document(str(request.url_for("dash", path="/demo")))
    context = {"title": "Weekly report", "user": user, "bokeh_script": script}
    return templates.TemplateResponse(request, "report.html", context)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)

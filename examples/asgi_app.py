"""app_server as a plain, importable ASGI app: for uvicorn, gunicorn or any ASGI server.

    uvicorn examples.asgi_app:app --port 5006
    uvicorn examples.asgi_app:app --port 5006 --root-path /bokeh     # behind a proxy at /bokeh
    gunicorn examples.asgi_app:app -k uvicorn_worker.UvicornWorker -w 4 -b 127.0.0.1:5006

Settings come from the environment (``APP_SERVER_*`` and Bokeh's ``BOKEH_*`` variables), so
every worker of a server builds the same app: with several workers give them all the same
``BOKEH_SECRET_KEY`` and ``BOKEH_SIGN_SESSIONS=true``.
"""

from pathlib import Path

from app_server import create_app

HERE = Path(__file__).resolve().parent

app = create_app({"/demo": HERE / "demo.py", "/lifecycle_app": HERE / "lifecycle_app"})

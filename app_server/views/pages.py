"""The app page, the autoload script, the metadata and the index of apps."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from bokeh.core.templates import AUTOLOAD_JS, FILE
from bokeh.core.types import ID
from bokeh.embed.bundle import Bundle, Script, bundle_for_objs_and_resources
from bokeh.embed.elements import html_page_for_render_items, script_for_render_items
from bokeh.embed.util import RenderItem
from bokeh.resources import Resources
from bokeh.util.paths import server_path
from bokeh.util.serialization import make_globally_unique_css_safe_id
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)

from .._panel import local_files
from ..contexts import SessionCreationError
from ..tokens import Token
from . import session_lost
from .compile_errors import compile_custom_models
from .sessions import authenticated_user, open_session, page_session, page_token

if TYPE_CHECKING:
    from ..contexts import AppContext
    from ..server import AppServer
    from ..session import ServerSession

__all__ = ["autoload", "favicon", "index", "metadata", "page"]


def root_url(server: AppServer, request: Request) -> str:
    """Where this server's URLs start, seen from the browser (ASGI root_path + --prefix)."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/") + server.settings.prefix + "/"


def resources(server: AppServer, request: Request, absolute_url: str | None = None) -> Resources:
    root = root_url(server, request)
    if absolute_url:
        root = urljoin(absolute_url, root)
    return Resources(mode="server", root_url=root, path_versioner=server.static_versions)


async def page(request: Request, *, server: AppServer, context: AppContext) -> Response:
    """The app's page. Unless the page is rendered from the document (a custom template, a
    session that already exists, or the app's first page in this process), no app code runs
    here: the session is created when the page's websocket connects, so a fetch that never
    connects (a crawler, a probe) costs a token, and with several workers the app code runs
    once per tab, where the socket lands.
    """
    creates = context.page_needs_document or not context.ran_app_code
    token = await page_token(server, context, request, creates=creates)
    if token.session_id not in context.sessions and not context.page_needs_document:
        if context.ran_app_code or await _first_page_session(context, request, token) is None:
            html = _page_for_token(token.text, server.page_bundles.get(resources(server, request)))
            return HTMLResponse(_finished(html, server, request))
    session = await page_session(context, request, token)
    document = session.document
    # Bokeh's server_html_page_for_session, with this request's own token (never the token of
    # whoever opened the session: it carries their cookies) and the server's page bundle
    render_item = RenderItem(token=token.text, roots=document.roots, use_for_title=True)
    html = html_page_for_render_items(
        server.page_bundles.get(resources(server, request)),
        {},
        [render_item],
        document.title,
        template=document.template,
        template_variables=document.template_variables,
    )
    return HTMLResponse(_finished(html, server, request))


async def _first_page_session(
    context: AppContext, request: Request, token: Token
) -> ServerSession | None:
    """The app's first page in this process creates its session, as every page does in
    ``bokeh serve``: model classes that the app code defines (custom models, extensions with
    their own scripts and styles) exist only once it has run, and the page must load them.
    An app whose code sets its own page template (``doc.template``) has every page rendered
    from its document from then on. None if the app code failed (the websocket says why)."""
    try:
        session = await open_session(context, request, token)
    except SessionCreationError:
        return None
    await compile_custom_models()  # TypeScript models compile for seconds: not on the loop
    # template variables alone change nothing in Bokeh's own page template
    if session.document.template is not FILE:
        context.page_needs_document = True
    return session


def _finished(html: str, server: AppServer, request: Request) -> str:
    """The page with this server's icon and the script that recovers a lost session."""
    root = root_url(server, request)
    return session_lost.with_script(_with_icon(html, root), root, server.settings)


def _with_icon(html: str, root: str) -> str:
    """Name this server's icon, so a mounted app's page does not ask the host's /favicon.ico."""
    if 'rel="icon"' in html or "<head>" not in html:
        return html
    return html.replace("<head>", f'<head>\n    <link rel="icon" href="{root}favicon.ico">', 1)


def _page_for_token(token: str, bundle: Bundle) -> str:
    """Bokeh's standard page with one element that BokehJS fills once the session exists."""
    render_item = RenderItem(
        token=token, elementid=ID(make_globally_unique_css_safe_id()), use_for_title=True
    )
    return html_page_for_render_items(bundle, {}, [render_item], None)


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Credentials": "true",
}


def _cors_headers(request: Request) -> dict[str, str]:
    headers = dict(_CORS)
    if request.cookies and "origin" in request.headers:
        headers["Access-Control-Allow-Origin"] = request.headers["origin"]
    return headers


async def autoload(request: Request, *, server: AppServer, context: AppContext) -> Response:
    """The script ``bokeh.embed.server_document``/``server_session`` put in other sites' pages."""
    headers = _cors_headers(request)
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = "PUT, GET, OPTIONS"
        return Response(headers=headers)
    element_id = request.query_params.get("bokeh-autoload-element")
    if not element_id:
        return Response("No bokeh-autoload-element query parameter", 400, headers=headers)
    creates = not context.ran_app_code  # else the websocket creates the session
    token = await page_token(server, context, request, creates=creates)
    if creates:
        await _first_page_session(context, request, token)
    app_path = request.query_params.get("bokeh-app-path", "/")
    absolute_url = request.query_params.get("bokeh-absolute-url")
    server_url = None
    if absolute_url:
        parts = urlsplit(absolute_url)
        server_url = f"{parts.scheme}://{parts.netloc}"
    with_resources = request.query_params.get("resources", "default") != "none"
    page_resources = resources(server, request, server_url) if with_resources else None
    bundle = bundle_for_objs_and_resources(None, page_resources)
    if page_resources is not None:
        bundle = local_files(bundle, page_resources.root_url)
    render_items = [RenderItem(token=token.text, elementid=ID(element_id), use_for_title=False)]
    script = script_for_render_items({}, render_items, app_path=app_path, absolute_url=absolute_url)
    bundle.add(Script(script))
    js = AUTOLOAD_JS.render(bundle=bundle, elementid=element_id)
    watcher = session_lost.script(server.settings)
    if watcher is not None:  # the embedding page's tab recovers as the app's page does
        js += "\n" + watcher
    return Response(js, media_type="application/javascript", headers=headers)


async def metadata(request: Request, *, server: AppServer, context: AppContext) -> Response:
    await authenticated_user(server, request)
    data = context.application.metadata
    if callable(data):
        data = data()
    url = root_url(server, request).rstrip("/") + (context.name if context.name != "/" else "")
    return JSONResponse({"url": url, "data": data or {}})


async def favicon(request: Request, *, server: AppServer) -> Response:
    """Bokeh's icon, as ``bokeh serve`` gives it, or the ``ico_path`` file; none with ``none``."""
    ico_path = server.settings.ico_path
    if ico_path == "none":
        return Response("Not Found", 404)
    path = server_path() / "views" / "bokeh.ico" if ico_path == "default" else ico_path
    return FileResponse(path, headers={"Cache-Control": "max-age=86400"})


async def index(request: Request, *, server: AppServer) -> Response:
    routes = sorted(server.contexts)
    root = root_url(server, request).rstrip("/")
    if len(routes) == 1 and not server.settings.disable_index_redirect:
        return RedirectResponse(root + routes[0])
    html = server.templates.get_template("index.html").render(root=root, routes=routes)
    return HTMLResponse(html)

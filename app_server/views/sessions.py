"""From a request to its session: gather the facts, let admission decide, open the session.

Pages, ``autoload.js``, websockets and ``AppTestClient`` all come through here, so the rules of
:mod:`app_server.admission` apply to each of them the same way.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request

from ..admission import Admit, Facts, Refusal, Refuse, decide
from ..auth import unauthenticated
from ..contexts import SessionCreationError
from ..forwarded import public_host
from ..requests import SessionRequest, request_payload
from ..tokens import Token, new_session_id, new_token, read_session_id, read_token

if TYPE_CHECKING:
    from ..contexts import AppContext
    from ..server import AppServer
    from ..session import ServerSession

__all__ = [
    "admit",
    "authenticated_user",
    "issue_token",
    "open_session",
    "page_session",
    "page_token",
    "refused",
    "requested_token",
]


def requested_token(request: HTTPConnection, server: AppServer) -> tuple[Token | None, str | None]:
    """The token or session id a page or autoload request names (decoded), or what is wrong."""
    settings = server.settings
    token = request.query_params.get("bokeh-token")
    session_id = request.query_params.get("bokeh-session-id")
    if "bokeh-session-id" in request.headers:
        if session_id is not None:
            return None, "give the session id as an argument or a header, not both"
        session_id = request.headers["bokeh-session-id"]
    if token is not None and session_id is not None:
        return None, "give a token or a session id, not both"
    if token is not None:
        return read_token(token, settings), None
    if session_id is not None:
        return read_session_id(session_id, settings), None
    return None, None


async def admit(
    server: AppServer,
    context: AppContext,
    conn: HTTPConnection,
    token: Token | None,
    *,
    creates: bool = True,
    websocket: bool = False,
    problem: str | None = None,
) -> Admit | Refuse:
    """The admission decision for this request; open the session before the next ``await``,
    so that the session counts the decision saw still hold."""
    user = await server.auth.user(conn)
    client = conn.client.host if conn.client else None
    facts = Facts(
        token,
        user=user,
        login_required=server.auth.enabled,
        holdings=context.holdings(token.session_id if token else None, client),
        creates=creates,
        websocket=websocket,
        origin=conn.headers.get("origin") if websocket else None,
        host=public_host(conn),
        problem=problem,
        app=context.name,
        client=client,
    )
    return decide(facts, server.settings)


def refused(server: AppServer, request: Request, refusal: Refuse) -> HTTPException:
    """The HTTP answer to a refused page request: a login redirect, or the status and reason."""
    if refusal.kind is Refusal.LOGIN_REQUIRED:
        return _to_login(server, request)
    return HTTPException(refusal.status, refusal.reason)


def _to_login(server: AppServer, request: Request) -> HTTPException:
    """The login redirect as an exception, without the redirect's own ``content-length: 0``,
    which would then contradict the body Starlette writes for the exception."""
    response = unauthenticated(server.auth, request, server.settings.prefix)
    headers = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
    return HTTPException(response.status_code, bytes(response.body).decode() or None, headers)


_BODY_HEADERS = ("content-length", "content-type")


async def authenticated_user(server: AppServer, request: Request) -> str | None:
    """The user of a request that opens no session (metadata); anonymous ones go to log in."""
    user = await server.auth.user(request)
    if user is None and server.auth.enabled:
        raise _to_login(server, request)
    return user


async def _process_request(context: AppContext, request: Request) -> dict[str, Any]:
    request_like = SessionRequest.unfiltered(request)  # what Bokeh's Tornado request offers apps
    extra = context.application.process_request(request_like)  # type: ignore[arg-type]
    return dict(await extra if inspect.isawaitable(extra) else extra)


async def issue_token(
    server: AppServer,
    context: AppContext,
    request: Request,
    user: str | None,
    session_id: str | None = None,
) -> Token:
    """A token for a new session (or a session id given without one), carrying the request
    (arguments, filtered headers and cookies, what the app's ``process_request`` adds), so
    any worker can create the session from it."""
    settings = server.settings
    payload = request_payload(request, settings)
    payload.update(await _process_request(context, request))
    if user is not None:
        payload["user"] = user
    return new_token(session_id or new_session_id(settings), settings, payload)


async def page_token(
    server: AppServer, context: AppContext, request: Request, *, creates: bool
) -> Token:
    """The admitted token of a page or autoload request, issued when it named none."""
    token, problem = requested_token(request, server)
    decision = await admit(server, context, request, token, creates=creates, problem=problem)
    if isinstance(decision, Refuse):
        raise refused(server, request, decision)
    token = decision.token
    if token is None or not token.text:  # a new session, or an id given without a token
        session_id = token.session_id if token else None
        return await issue_token(server, context, request, decision.user, session_id)
    return token


async def open_session(
    context: AppContext, conn: HTTPConnection, token: Token, payload: dict[str, Any] | None = None
) -> ServerSession:
    """The admitted token's session, created (its app code run) if it does not exist yet.

    A page's token carries its request; a client's may not: then ``payload`` (the websocket's
    own query, cookies and headers) stands in, as in Bokeh.
    """
    missing = {name: value for name, value in (payload or {}).items() if name not in token.payload}
    request = SessionRequest(conn, **missing, token=token.text)
    return await context.create_session_if_needed(token, request)


async def page_session(context: AppContext, request: Request, token: Token) -> ServerSession:
    """:func:`open_session` for a page: the app code's failure is a 500 naming it."""
    try:
        return await open_session(context, request, token)
    except SessionCreationError as exc:
        raise HTTPException(500, str(exc).splitlines()[0]) from exc

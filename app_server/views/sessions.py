"""Finding or creating the session a page or autoload request asks for, as Bokeh does."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from bokeh.util.token import get_session_id, get_token_payload
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..auth import unauthenticated
from ..contexts import SessionCreationError
from ..exceptions import SessionLimitError
from ..requests import SessionRequest, request_payload
from ..tokens import check_token, new_session_id, new_token

if TYPE_CHECKING:
    from ..contexts import AppContext
    from ..server import AppServer
    from ..session import ServerSession

__all__ = ["authenticated_user", "session_for_request", "session_for_token", "token_for_request"]


def _requested(request: Request) -> tuple[str | None, str | None]:
    token = request.query_params.get("bokeh-token")
    session_id = request.query_params.get("bokeh-session-id")
    if "bokeh-session-id" in request.headers:
        if session_id is not None:
            raise HTTPException(403, "give the session id as an argument or a header, not both")
        session_id = request.headers["bokeh-session-id"]
    if token is not None and session_id is not None:
        raise HTTPException(403, "give a token or a session id, not both")
    return token, session_id


async def _process_request(context: AppContext, request: Request) -> dict[str, Any]:
    request_like = SessionRequest.unfiltered(request)  # what Bokeh's Tornado request offers apps
    extra = context.application.process_request(request_like)  # type: ignore[arg-type]
    return await extra if inspect.isawaitable(extra) else extra


async def authenticated_user(server: AppServer, request: Request) -> str | None:
    """The user; with an auth module and nobody logged in, off to the login page."""
    user = await server.auth.user(request)
    if user is None and server.auth.enabled:
        response = unauthenticated(server.auth, request, server.settings.prefix)
        raise HTTPException(response.status_code, headers=dict(response.headers))
    return user


async def token_for_request(server: AppServer, context: AppContext, request: Request) -> str:
    """The token of the session a page or autoload request asks for; no app code runs.

    A new token carries the request (arguments, filtered headers and cookies, and what the
    app's ``process_request`` adds), so any worker can create the session from it.
    """
    settings = server.settings
    user = await authenticated_user(server, request)
    token, session_id = _requested(request)
    if token is None:
        if session_id is None:
            if not settings.generate_session_ids:
                raise HTTPException(403, "this server needs a bokeh-session-id argument")
            session_id = new_session_id(settings)
        payload = request_payload(request, settings)
        payload.update(await _process_request(context, request))
        if user is not None:
            payload["user"] = user
        token = new_token(session_id, settings, payload)

    check = check_token(token, settings)
    if check.session_id is None:
        raise HTTPException(403, f"invalid token or session id: {check.problem}")
    if check.expired and check.session_id not in context.sessions:
        raise HTTPException(403, "the token has expired; reload the page for a new session")
    return token


async def session_for_request(
    server: AppServer, context: AppContext, request: Request
) -> ServerSession:
    """The session a request asks for, created (its app code run) if it does not exist yet."""
    token = await token_for_request(server, context, request)
    return await session_for_token(context, request, token)


async def session_for_token(context: AppContext, request: Request, token: str) -> ServerSession:
    """The token's session, created if needed; another user's session is refused."""
    session_id = get_session_id(token)
    if context.owner(session_id) not in (None, get_token_payload(token).get("user")):
        raise HTTPException(403, "this session belongs to another user")
    session_request = SessionRequest.from_payload(request, get_token_payload(token))
    try:
        return await context.create_session_if_needed(session_id, token, session_request)
    except SessionLimitError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    except SessionCreationError as exc:
        raise HTTPException(500, str(exc).splitlines()[0]) from exc

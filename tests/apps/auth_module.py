"""A Bokeh-style auth module: the user is a signed cookie set by the login handler."""

from urllib.parse import parse_qs

from starlette.endpoints import HTTPEndpoint
from starlette.responses import HTMLResponse, RedirectResponse

from app_server.auth import AuthRequest

login_url = "/login"
logout_url = "/logout"


def get_user(request_handler):
    user = request_handler.get_secure_cookie("user")
    return user.decode() if user else None


class LoginHandler(HTTPEndpoint):
    async def get(self, request):
        return HTMLResponse("<form method=post><input name=name><button>log in</button></form>")

    async def post(self, request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        auth = AuthRequest(request, cookie_secret="test-cookie-secret")
        response = RedirectResponse(request.query_params.get("next", "/"), status_code=302)
        response.set_cookie("user", auth.signed_cookie_value("user", str(form["name"])))
        return response


async def LogoutHandler(request):
    response = RedirectResponse("/login", status_code=302)
    response.delete_cookie("user")
    return response

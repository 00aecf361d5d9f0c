"""An auth module written for bokeh serve: its login handler is a Tornado RequestHandler."""

from tornado.web import RequestHandler


def get_user(request_handler):  # type: ignore[no-untyped-def]
    return request_handler.get_cookie("user")


login_url = "/login"


class LoginHandler(RequestHandler):
    def get(self) -> None:
        self.write("<form method='post'><input name='user'></form>")

"""app_server writes its own server: no Tornado, nothing of Bokeh's server or client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app_server

PACKAGE = Path(app_server.__file__).parent
FORBIDDEN = ("tornado", "bokeh.client", "bokeh.util.tornado", "bokeh.server")
ALLOWED = ("bokeh.server.callbacks",)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _is_forbidden(module: str) -> bool:
    if module in ALLOWED:
        return False
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_imports_tornado_or_bokehs_server_or_client(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _is_forbidden(m))
    assert not bad, f"{path.name} imports {bad}; app_server implements these itself"


@pytest.mark.parametrize("path", sorted((PACKAGE / "protocol").rglob("*.py")), ids=lambda p: p.name)
def test_the_protocol_layer_does_no_io(path: Path) -> None:
    io = {"asyncio", "socket", "starlette", "websockets", "uvicorn", "threading"}
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in io)
    assert not bad, f"protocol/{path.name} imports {bad}; the protocol layer is sans-I/O"


def test_the_public_api_is_what_all_says() -> None:
    assert sorted(app_server.__all__) == sorted(
        [
            "AppServerError",
            "ConfigurationError",
            "DocumentAccessError",
            "SessionError",
            "SessionLimitError",
            "Settings",
            "create_app",
            "load_once",
            "mounted_lifespan",
            "shared",
        ]
    )
    for name in app_server.__all__:
        assert hasattr(app_server, name)


def test_every_error_has_one_root() -> None:
    for name in ("ConfigurationError", "DocumentAccessError", "SessionError", "SessionLimitError"):
        assert issubclass(getattr(app_server, name), app_server.AppServerError)

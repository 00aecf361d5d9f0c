"""app_server writes its own server: no Tornado, nothing of Bokeh's server or client.

Bokeh's private API is another boundary, checked in ``tests/test_bokeh_internals.py``.
"""

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


def dynamically_imported_modules(path: Path) -> set[str]:
    """Modules named by ``importlib.import_module("...")`` or ``__import__("...")``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
            names.add(str(first.value))
    return names


def _module_path(module: str) -> Path | None:
    """The file of an app_server module (``app_server.x.y``), or None if it is not one."""
    parts = module.split(".")
    if parts[0] != "app_server":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_server_dependencies(path: Path) -> set[Path]:
    """The app_server files that importing ``path`` runs, itself included, followed through
    absolute and relative imports (and the packages in between), but not the top-level
    ``app_server/__init__.py``."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen or current == PACKAGE / "__init__.py":
            continue
        seen.add(current)
        package = _module_name(current).split(".")
        if current.name != "__init__.py":
            package = package[:-1]
        for node in ast.walk(ast.parse(current.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
            for target in targets:
                parts = target.split(".")
                for end in range(2, len(parts) + 1):  # the packages in between run too
                    found = _module_path(".".join(parts[:end]))
                    if found is not None:
                        todo.append(found)
    return seen


def _is_forbidden(module: str) -> bool:
    if module in ALLOWED:
        return False
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_imports_tornado_or_bokehs_server_or_client(path: Path) -> None:
    modules = imported_modules(path) | dynamically_imported_modules(path)
    bad = sorted(m for m in modules if _is_forbidden(m))
    assert not bad, f"{path.name} imports {bad}; app_server implements these itself"


def test_the_boundary_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "import tornado.ioloop\n"
        "from bokeh.server.server import Server\n"
        "from bokeh.server.callbacks import PeriodicCallback\n"
        "import importlib\n"
        "client = importlib.import_module('bokeh.client')\n"
        "web = __import__('tornado.web')\n"
    )
    modules = imported_modules(source) | dynamically_imported_modules(source)
    assert sorted(m for m in modules if _is_forbidden(m)) == [
        "bokeh.client",
        "bokeh.server.server",
        "tornado.ioloop",
        "tornado.web",
    ]


@pytest.mark.parametrize("path", sorted((PACKAGE / "protocol").rglob("*.py")), ids=lambda p: p.name)
def test_the_protocol_layer_does_no_io(path: Path) -> None:
    """Neither the protocol's modules nor the app_server modules they import (the Bokeh
    adapters of ``app_server/_bokeh``) import an I/O library."""
    io = {"asyncio", "socket", "starlette", "websockets", "uvicorn", "threading"}
    for dependency in sorted(app_server_dependencies(path)):
        bad = sorted(m for m in imported_modules(dependency) if m.split(".")[0] in io)
        where = dependency.relative_to(PACKAGE)
        assert not bad, f"protocol/{path.name} runs {where}, which imports {bad}; keep it sans-I/O"


def test_the_protocols_dependencies_are_followed() -> None:
    reached = app_server_dependencies(PACKAGE / "protocol" / "serializer.py")
    assert PACKAGE / "_bokeh" / "properties.py" in reached
    assert PACKAGE / "_bokeh" / "__init__.py" in reached
    assert PACKAGE / "__init__.py" not in reached


@pytest.mark.parametrize("path", sorted((PACKAGE / "_bokeh").glob("*.py")), ids=lambda p: p.name)
def test_the_bokeh_adapters_depend_on_bokeh_alone(path: Path) -> None:
    """``app_server/_bokeh`` imports nothing else of app_server, so any layer may use it."""
    outside = sorted(
        str(p.relative_to(PACKAGE))
        for p in app_server_dependencies(path)
        if not p.is_relative_to(PACKAGE / "_bokeh")
    )
    assert not outside, f"_bokeh/{path.name} imports {outside}"


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

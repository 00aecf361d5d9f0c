"""Imports go one way, down: a request travels views -> server -> connection -> contexts ->
session -> the base (protocol, admission, tokens, settings, Bokeh adapters), never back up.

Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app_server

PACKAGE = Path(app_server.__file__).parent

# the higher a layer, the more it may import; a module may import its own layer or lower
LAYERS: dict[str, int] = {
    "session": 1,
    "contexts": 2,
    "connection": 3,
    "server": 4,
    "security": 4,
    "views": 5,
    "app": 6,
    "testing": 7,
    "cli": 7,
    "_worker": 8,  # a worker process's entry point: it runs cli's serve_worker
    "__init__": 8,
    "client": 8,  # the Python client stands apart: it imports the protocol only
}


def layer(module: str) -> int:
    """The layer of ``app_server.<module>``: what is not listed is the base (0)."""
    return LAYERS.get(module.split(".")[0], 0)


def runtime_imports(source: str, module: str) -> set[str]:
    """The app_server modules ``module``'s ``source`` imports when it runs (dotted, below the
    package; names imported from a package count as possible submodules)."""
    parts = module.split(".")
    package = parts if (PACKAGE / Path(*parts)).is_dir() else parts[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                    found.add(target)
                    found.update(f"{target}.{a.name}" if target else a.name for a in child.names)
                elif child.module and child.module.startswith("app_server."):
                    found.add(child.module.removeprefix("app_server."))
            visit(child)

    visit(ast.parse(source))
    return {name for name in found if name}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = (
        relative.parts[:-1]
        if relative.name == "__init__" and len(relative.parts) > 1
        else relative.parts
    )
    return ".".join(parts)


def upward(source: str, module: str) -> list[str]:
    return sorted(t for t in runtime_imports(source, module) if layer(t) > layer(module))


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down(path: Path) -> None:
    module = module_name(path)
    found = upward(path.read_text(), module)
    assert not found, f"app_server.{module} (layer {layer(module)}) imports {found} from above"


def test_the_check_sees_an_import_from_above_but_not_an_annotation() -> None:
    assert upward("from .server import AppServer", "session") == ["server", "server.AppServer"]
    assert upward("from ..connection import Connection", "protocol.message") != []
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .server import X"
    assert upward(typing_only, "session") == []

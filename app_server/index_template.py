"""``--index`` templates written for ``bokeh serve`` (Tornado's template syntax), rendered with
Jinja2: the two share ``{{ expression }}`` and ``{% for/if ... %}``, but Tornado closes every
block with ``{% end %}``, which becomes the matching ``{% endfor %}``/``{% endif %}`` here."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment

from .exceptions import ConfigurationError

__all__ = ["render_index", "tornado_to_jinja"]

_TAG = re.compile(r"{%-?\s*(\w+)([^%]*?)-?%}")
_BLOCKS = {"for", "if", "while", "block", "try", "apply", "autoescape"}
_JINJA_BLOCKS = {"for", "if", "block"}  # Tornado's others have no Jinja2 counterpart


def tornado_to_jinja(source: str) -> str:
    """Tornado's ``{% end %}`` becomes the end tag of the block it closes."""
    open_blocks: list[str] = []

    def replace(match: re.Match[str]) -> str:
        keyword = match.group(1)
        if keyword in _BLOCKS:
            if keyword not in _JINJA_BLOCKS:
                raise ConfigurationError(
                    f"--index: the Tornado template tag {{% {keyword} %}} has no Jinja2 "
                    "equivalent; use for, if and block only"
                )
            open_blocks.append(keyword)
        elif keyword == "end":
            if not open_blocks:
                raise ConfigurationError("--index: {% end %} closes no block")
            return f"{{% end{open_blocks.pop()} %}}"
        return match.group(0)

    return _TAG.sub(replace, source)


def render_index(path: str, *, prefix: str, items: list[str]) -> str:
    """The ``--index`` page, given what Bokeh gives it: ``prefix`` and the app routes."""
    source = tornado_to_jinja(Path(path).read_text())
    template = Environment(autoescape=True).from_string(source)
    return template.render(prefix=prefix, items=items)

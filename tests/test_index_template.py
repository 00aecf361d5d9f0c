"""``--index`` templates written for bokeh serve (Tornado syntax) render the same here."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_server import ConfigurationError
from app_server.index_template import render_index, tornado_to_jinja


def test_each_end_closes_the_block_it_ends() -> None:
    source = "{% if items %}{% for i in items %}{{ i }}{% end %}{% else %}none{% end %}"
    assert tornado_to_jinja(source) == (
        "{% if items %}{% for i in items %}{{ i }}{% endfor %}{% else %}none{% endif %}"
    )


def test_the_index_gets_prefix_and_items_escaped(tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    index.write_text("{% for item in items %}<a href='{{ prefix }}{{ item }}'>{% end %}")
    html = render_index(str(index), prefix="/p", items=["/a", "/<b>"])
    assert html == "<a href='/p/a'><a href='/p/&lt;b&gt;'>"


@pytest.mark.parametrize("source", ["{% end %}", "{% try %}x{% end %}"])
def test_what_has_no_counterpart_says_so(source: str) -> None:
    with pytest.raises(ConfigurationError, match="--index"):
        tornado_to_jinja(source)

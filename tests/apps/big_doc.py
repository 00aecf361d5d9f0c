"""Test app for the byte bounds (tests/test_limits.py): a large document, and optional pushes.

Request arguments: ``mb`` (the document's column data, default 2) and ``push_kb`` (every
100 ms, a patch of that many kilobytes goes to each client; default 0: none).
"""

from bokeh.io import curdoc
from bokeh.models import ColumnDataSource, Div

doc = curdoc()
arguments = doc.session_context.request.arguments


def argument(name, default):
    return int(arguments[name][0]) if name in arguments else default


mb, push_kb = argument("mb", 2), argument("push_kb", 0)
rows = mb * 1024 * 1024 // 32
source = ColumnDataSource(data={"label": [f"row {n:026d}" for n in range(rows)]})
pushed = Div(text="", name="pushed")
doc.add_root(pushed)
doc.add_root(source)
ticks = 0


def push():
    global ticks
    ticks += 1
    pushed.text = f"{ticks:08d}" + "x" * (push_kb * 1024)


if push_kb:
    doc.add_periodic_callback(push, 100)

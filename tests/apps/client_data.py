"""Test app for app_server.client: numpy columns travel both ways as binary buffers.

When the client replaces ``source.data``, the server describes what it received in
``summary`` (a numpy array proves a binary buffer arrived) and answers with the doubled
values in ``doubled``, which the client should receive as a numpy array too.
"""

import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div

source = ColumnDataSource(data={"x": np.arange(5, dtype=np.float64)}, name="source")
doubled = ColumnDataSource(data={"y": np.zeros(0)}, name="doubled")
summary = Div(text="", name="summary")


def describe(attr, old, new):
    x = source.data["x"]
    kind = f"{type(x).__name__} {getattr(x, 'dtype', '-')}"
    summary.text = f"{kind} len={len(x)} sum={float(np.sum(x))}"
    doubled.data = {"y": np.asarray(x, dtype=np.float64) * 2}


source.on_change("data", describe)
curdoc().add_root(column(summary))
curdoc().add_root(source)
curdoc().add_root(doubled)

"""A Panel ``Tabulator`` filtered from Python by a widget in the browser (tests/test_panel.py)."""

import pandas as pd
import panel as pn

pn.extension("tabulator")

frame = pd.DataFrame({"fruit": ["apple", "pear", "plum", "fig"], "count": [3, 1, 4, 1]})
table = pn.widgets.Tabulator(frame, show_index=False)
minimum = pn.widgets.IntInput(label="At least", value=0, start=0, end=10)


def keep(df: pd.DataFrame, at_least: int) -> pd.DataFrame:
    return df[df["count"] >= at_least]


def summary(value: pd.DataFrame, at_least: int) -> str:
    return f"total: {int(keep(value, at_least)['count'].sum())}"


table.add_filter(pn.bind(keep, at_least=minimum))
total = pn.pane.Str(pn.bind(summary, table.param.value, minimum))

pn.Column(minimum, table, total).servable(title="Panel table")

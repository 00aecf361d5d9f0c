"""A Panel app: widgets, ``pn.bind`` and ``.servable()`` (tests/test_panel.py)."""

import panel as pn

pn.extension()

name = pn.widgets.TextInput(label="Name", value="ann", css_classes=["name-input"])
repeat = pn.widgets.IntSlider(label="Repeat", start=1, end=5, value=2)
clicks = pn.widgets.Button(label="Shout", color="primary")


def greeting(name: str, repeat: int, shouts: int) -> str:
    text = " ".join([f"hello {name}"] * repeat)
    return f"{text}{'!' * shouts}"


pn.Column(
    "# Greeter",
    name,
    repeat,
    clicks,
    pn.pane.Markdown(pn.bind(greeting, name, repeat, clicks.param.clicks), css_classes=["out"]),
).servable(title="Panel greeter")

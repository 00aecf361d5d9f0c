"""A Panel app in a ``FastListTemplate``: its sidebar drives the main area (test_panel.py)."""

import panel as pn

pn.extension(design="fast")

color = pn.widgets.Select(label="Color", options=["red", "green", "blue"], value="red")
size = pn.widgets.FloatSlider(label="Size", start=1.0, end=4.0, step=0.5, value=2.0)


def swatch(color: str, size: float) -> pn.pane.HTML:
    box = f"<div style='width:{size}em;height:{size}em;background:{color}'></div>"
    return pn.pane.HTML(f"{box}<p class='swatch'>{color} at {size}</p>")


pn.template.FastListTemplate(
    title="Swatches",
    sidebar=[color, size],
    main=[pn.bind(swatch, color, size)],
).servable()

"""The mistake from seed 000: a Bokeh model at module level in an imported module."""

from bokeh.models import Div

status = Div(text="shared by accident")

"""An app showing a model of a pre-built extension package (tests/apps/extensions on the path)."""

from app_server_test_ext import Hello
from bokeh.io import curdoc

curdoc().add_root(Hello(text="hello from an extension"))

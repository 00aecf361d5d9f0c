"""A pre-built Bokeh extension package, as Panel and others ship theirs: ``bokeh.ext.json``, a
``package.json`` whose ``main`` names the compiled bundle, and the bundle under ``dist/``
(written by hand here: a plugin in the format Bokeh's compiler emits). Its view loads a
stylesheet that sits beside the bundle, as Panel's does."""

from bokeh.core.properties import String
from bokeh.models import LayoutDOM

__all__ = ["Hello"]


class Hello(LayoutDOM):
    text = String(default="")

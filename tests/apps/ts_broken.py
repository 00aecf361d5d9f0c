"""A custom model whose TypeScript does not compile: its page must say which model, where.

``TS_BROKEN_SOURCE`` names a file to read the TypeScript from instead (a test edits it).
"""

import os
from pathlib import Path

from bokeh.io import curdoc
from bokeh.models import LayoutDOM
from bokeh.util.compiler import TypeScript

IMPLEMENTATION = """
import {LayoutDOM, LayoutDOMView} from "models/layouts/layout_dom"

export class BrokenView extends LayoutDOMView {
  override get child_models() {
    return undefined_children_name
  }
}

export class Broken extends LayoutDOM {
  static {
    this.prototype.default_view = BrokenView
  }
}
"""

if "TS_BROKEN_SOURCE" in os.environ:
    IMPLEMENTATION = Path(os.environ["TS_BROKEN_SOURCE"]).read_text()


class Broken(LayoutDOM):
    __implementation__ = TypeScript(IMPLEMENTATION)


curdoc().add_root(Broken())

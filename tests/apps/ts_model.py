"""A custom model with a TypeScript ``__implementation__`` (compiled by Bokeh with node) whose
``__javascript__`` loads a script from another origin: ``TS_MODEL_SCRIPT`` names its URL."""

import os
from typing import ClassVar

from bokeh.core.properties import String
from bokeh.io import curdoc
from bokeh.models import LayoutDOM
from bokeh.util.compiler import TypeScript

IMPLEMENTATION = """
import {LayoutDOM, LayoutDOMView} from "models/layouts/layout_dom"
import type {UIElement} from "models/ui/ui_element"
import {div} from "core/dom"
import type * as p from "core/properties"

declare const from_other_origin: string | undefined

export class GreetingView extends LayoutDOMView {
  declare model: Greeting

  override get child_models(): UIElement[] {
    return []
  }

  override render(): void {
    super.render()
    const origin = typeof from_other_origin == "undefined" ? "missing" : from_other_origin
    this.shadow_el.append(div({class: "greeting"}, `${this.model.text} (${origin})`))
  }
}

export namespace Greeting {
  export type Attrs = p.AttrsOf<Props>
  export type Props = LayoutDOM.Props & {text: p.Property<string>}
}

export interface Greeting extends Greeting.Attrs {}

export class Greeting extends LayoutDOM {
  declare properties: Greeting.Props
  declare __view_type__: GreetingView

  constructor(attrs?: Partial<Greeting.Attrs>) {
    super(attrs)
  }

  static {
    this.prototype.default_view = GreetingView
    this.define<Greeting.Props>(({Str}) => ({text: [Str, ""]}))
  }
}
"""


class Greeting(LayoutDOM):
    __implementation__ = TypeScript(IMPLEMENTATION)
    __javascript__: ClassVar[list[str]] = [os.environ.get("TS_MODEL_SCRIPT", "")]

    text = String(default="")


curdoc().add_root(Greeting(text="hello from TypeScript"))

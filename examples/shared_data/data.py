"""The large, read-only data every session uses: loaded once per server process."""

import numpy as np
import pandas as pd

from app_server import load_once

ROWS = 1_000_000


@load_once
def load_prices() -> pd.DataFrame:
    """A 1,000,000-row DataFrame (about 40 MB), computed once however many sessions ask."""
    rng = np.random.default_rng(42)
    steps = rng.normal(0, 1, size=(ROWS, 4)).cumsum(axis=0)
    return pd.DataFrame(steps + 100, columns=["alpha", "beta", "gamma", "delta"])

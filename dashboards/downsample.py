"""Downsampling before plotting: a browser never receives millions of raw points.

The system metrics are binned by the job (``Job.system_series``, the shared binning in
:mod:`analyzer.analyses.summary`); this module bins what the pages draw from the report's
series (step times, data-loader waits) the same way, and turns values into histogram counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.analyses.summary import MAX_POINTS, bin_groups, points_per_trace

__all__ = ["MAX_BINS", "MAX_POINTS", "histogram", "points_per_trace", "xy_series"]

#: histogram bins: at least a few (a shape), at most what a chart's width shows as bars
MIN_BINS, MAX_BINS = 4, 60


def xy_series(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """One (x, y) series: unchanged (min = mean = max = y) when short, else binned on x.

    Columns: x, min, mean, max, n.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return pd.DataFrame(
            {"x": x, "min": y, "mean": y, "max": y, "n": np.ones(len(x), dtype=np.int64)}
        )
    out = bin_groups(x, y, np.zeros(len(x), dtype=np.int64), 1, max_points)
    return out.drop(columns="group").rename(columns={"t": "x"})


def histogram(
    values: dict[str, np.ndarray], bins: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Shared bin edges and per-series counts (the browser gets counts, never raw values).

    Without ``bins``, numpy's "auto" rule picks as many bins as the values support (about
    five for 16 steps, not 60 bars of one step each), at most :data:`MAX_BINS`.
    """
    allv = (
        np.concatenate([np.asarray(v, dtype=float) for v in values.values()])
        if values
        else np.empty(0)
    )
    allv = allv[np.isfinite(allv)]
    if len(allv) == 0:
        return np.empty(0), {k: np.empty(0) for k in values}
    lo, hi = float(allv.min()), float(allv.max())
    if hi <= lo:
        hi = lo + 1.0
    if bins is None:
        auto = len(np.histogram_bin_edges(allv, bins="auto", range=(lo, hi))) - 1
        bins = min(MAX_BINS, max(MIN_BINS, auto))
    edges = np.linspace(lo, hi, bins + 1)
    return edges, {
        k: np.histogram(np.asarray(v, dtype=float), bins=edges)[0] for k, v in values.items()
    }

"""Node, rank and time-window filters: one sidebar for every page, mirrored in the URL.

Why in the URL: a view can be shared by copying the address. The query parameters are
read once when a session starts (``?node=algo-1&rank=3&from=120&to=600``, times in seconds
after the job's start); after that the widgets are the truth and are written back to the
URL on every run, so they also survive page switches (which clear the query string).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from analyzer.analyses.system import natural_key

NODES_KEY = "flt_nodes"
RANKS_KEY = "flt_ranks"
WINDOW_KEY = "flt_window"
_LOADED = "_flt_from_url"


@dataclass(frozen=True)
class Filters:
    """The chosen nodes and ranks (empty = all) and time window (epoch seconds, None = all)."""

    nodes: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    window: tuple[float, float] | None = None
    #: job start, epoch seconds (for relative times)
    t0: float = 0.0

    def rank_list(self, ranks: Iterable[int], rank_node: dict[int, str | None]) -> list[int]:
        """Ranks to show: the chosen ones (all when none), minus those on unchosen nodes."""
        out = [r for r in ranks if not self.ranks or r in self.ranks]
        if self.nodes:
            out = [r for r in out if rank_node.get(r) is None or rank_node.get(r) in self.nodes]
        return out

    def node_list(self, nodes: Iterable[str]) -> list[str]:
        return [n for n in nodes if not self.nodes or n in self.nodes]

    def worker_list(
        self, workers: Iterable[str], rank_node: dict[int, str | None], nodes: Iterable[str] = ()
    ) -> list[str]:
        """Training workers to show: those on a chosen node and rank (all when none is chosen);
        a worker whose name says no node (or no rank) is not narrowed by that filter."""
        known = set(nodes)
        out = []
        for w in workers:
            node, rank = worker_place(w, known)
            if node is None and rank is not None:
                node = rank_node.get(rank)
            if self.nodes and node is not None and node not in self.nodes:
                continue
            if self.ranks and rank is not None and rank not in self.ranks:
                continue
            out.append(w)
        return out

    def in_window_ns(self, start_ns: pd.Series) -> pd.Series:
        """Mask of rows whose start lies in the window (all True without one)."""
        if self.window is None:
            return pd.Series(True, index=start_ns.index)
        lo, hi = self.window
        return (start_ns >= lo * 1e9) & (start_ns <= hi * 1e9)

    def describe(self) -> str:
        parts = [
            f"nodes {', '.join(sorted(self.nodes, key=natural_key))}"
            if self.nodes
            else "all nodes",
            f"ranks {', '.join(map(str, sorted(self.ranks)))}" if self.ranks else "all ranks",
        ]
        if self.window:
            parts.append(f"{self.window[0] - self.t0:.0f}-{self.window[1] - self.t0:.0f} s")
        return " · ".join(parts)


#: training worker names that say where they ran: ``algo-1 rank 0`` (stepscope's health
#: hooks), ``algo-1/rank 0``, ``rank 3``, and Debugger's ``worker_0`` / ``algo-1_worker_0``
_WORKER_PLACE = (
    re.compile(r"^(?:(?P<node>.+?)[ /])?rank ?(?P<rank>\d+)$"),
    re.compile(r"^(?:(?P<node>.+?)[_/ ])?worker_?(?P<rank>\d+)$"),
)


def worker_place(
    worker: str, nodes: set[str] | frozenset[str] = frozenset()
) -> tuple[str | None, int | None]:
    """(node, rank) a training worker's name gives, None where it says nothing; a name that
    is one of the job's ``nodes`` (a TensorBoard run named after its host) is that node."""
    for pattern in _WORKER_PLACE:
        m = pattern.match(worker.strip())
        if m:
            return m.group("node") or None, int(m.group("rank"))
    return (worker, None) if worker in nodes else (None, None)


def _floats(qp: Any, key: str) -> float | None:
    try:
        v = float(qp.get(key))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _from_url(nodes: list[str], ranks: list[int], span_s: float) -> None:
    """Seed the widgets from the query string, once per session; unknown values are dropped."""
    if st.session_state.get(_LOADED):
        return
    st.session_state[_LOADED] = True
    qp = st.query_params
    st.session_state[NODES_KEY] = [n for n in qp.get_all("node") if n in nodes]
    wanted = {int(r) for r in qp.get_all("rank") if r.strip().lstrip("-").isdigit()}
    st.session_state[RANKS_KEY] = [r for r in ranks if r in wanted]
    lo, hi = _floats(qp, "from"), _floats(qp, "to")
    if span_s > 0:
        lo = 0.0 if lo is None else min(max(lo, 0.0), span_s)
        hi = span_s if hi is None else min(max(hi, lo), span_s)
        st.session_state[WINDOW_KEY] = (lo, hi)


def _prune(key: str, allowed: list[Any]) -> None:
    """Drop stale choices (a refreshed job may have other nodes/ranks): widgets reject them."""
    cur = st.session_state.get(key)
    if isinstance(cur, list):
        st.session_state[key] = [v for v in cur if v in allowed]


def _to_url(f: Filters, span_s: float) -> None:
    qp = st.query_params
    desired: dict[str, list[str] | str] = {}
    if f.nodes:
        desired["node"] = list(f.nodes)
    if f.ranks:
        desired["rank"] = [str(r) for r in f.ranks]
    if f.window and (f.window[0] - f.t0 > 0.05 or f.t0 + span_s - f.window[1] > 0.05):
        desired["from"] = f"{f.window[0] - f.t0:.1f}"
        desired["to"] = f"{f.window[1] - f.t0:.1f}"
    for key in ("node", "rank", "from", "to"):
        if key not in desired and key in qp:
            del qp[key]
    for key, val in desired.items():
        current = qp.get_all(key)
        if current != (val if isinstance(val, list) else [val]):
            qp[key] = val


def sidebar(nodes: list[str], ranks: list[int], span: tuple[float, float] | None) -> Filters:
    """Render the filter widgets in the sidebar and return the current choice."""
    t0, t1 = span if span else (0.0, 0.0)
    span_s = max(0.0, t1 - t0)
    _from_url(nodes, ranks, span_s)
    _prune(NODES_KEY, nodes)
    _prune(RANKS_KEY, ranks)
    with st.sidebar:
        st.subheader("Filters")
        chosen_nodes: list[str] = (
            st.multiselect(
                "Nodes", nodes, key=NODES_KEY, placeholder="all nodes", disabled=not nodes
            )
            if nodes
            else []
        )
        chosen_ranks: list[int] = (
            st.multiselect(
                "Ranks",
                ranks,
                key=RANKS_KEY,
                placeholder="all ranks",
                format_func=lambda r: f"rank {r}",
                disabled=not ranks,
            )
            if ranks
            else []
        )
        window = None
        if span_s > 0:
            if WINDOW_KEY not in st.session_state:
                st.session_state[WINDOW_KEY] = (0.0, span_s)
            lo, hi = st.session_state[WINDOW_KEY]
            st.session_state[WINDOW_KEY] = (min(max(lo, 0.0), span_s), min(max(hi, 0.0), span_s))
            rel: Any = st.slider(
                "Time window (s after start)",
                0.0,
                float(span_s),
                key=WINDOW_KEY,
                step=max(0.1, round(span_s / 1000, 1)),
                format="%.1f",
            )
            lo, hi = float(rel[0]), float(rel[1])
            if lo > 0.05 or span_s - hi > 0.05:
                window = (t0 + lo, t0 + hi)
    f = Filters(
        nodes=tuple(chosen_nodes), ranks=tuple(int(r) for r in chosen_ranks), window=window, t0=t0
    )
    _to_url(f, span_s)
    return f

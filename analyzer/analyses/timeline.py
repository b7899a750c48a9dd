"""One training step, every rank, side by side: what each CPU thread and CUDA stream did
during ``ProfilerStep#N`` — the view that shows a straggler's extra work and the time the
other ranks spend waiting for it in a collective.

Definition: for step ``N`` of each rank (its Kineto ``ProfilerStep#N``), the events that
start inside that step: ``record_function`` ranges (``user_annotation``: data loading,
forward, backward, ``gloo:all_reduce``...), CPU ops the kernel table classifies as
communication, and the GPU's kernels, memory copies and sets. Each gets a *lane* — a CUDA
stream, or a CPU thread and nesting depth (a range inside another lies one row below it) —
and a *kind*: ``data loading`` (``DATALOADER_EVENT_RE``), ``communication``, ``memory``,
``computation`` (GPU work) or ``label`` (other ranges). Times are milliseconds from the
earliest start of step ``N`` over the ranks shown, so the ranks' skew stays visible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.analyses.kernel_classes import COMMUNICATION, GPU_WORK_CATEGORIES, MEMORY, classify
from analyzer.analyses.steps import DATALOADER_EVENT_RE
from analyzer.ingest.dataset import JobDataset

__all__ = ["TIMELINE_COLUMNS", "step_timeline"]

TIMELINE_COLUMNS = ["rank", "lane", "lane_order", "name", "kind", "start_ms", "dur_ms"]
_GPU_CATS = GPU_WORK_CATEGORIES
_MAX_DEPTH = 4  # deeper ranges share the last row


def _depths(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Nesting depth of each interval (sorted by start) among the ones still open."""
    depth = np.zeros(len(start), dtype=np.int64)
    open_ends: list[int] = []
    for i in range(len(start)):
        while open_ends and open_ends[-1] <= start[i]:
            open_ends.pop()
        depth[i] = len(open_ends)
        open_ends.append(int(end[i]))
        open_ends.sort(reverse=True)  # the innermost (earliest end) on top
    return np.minimum(depth, _MAX_DEPTH)


def step_timeline(
    ds: JobDataset, step: int, *, ranks: list[int] | None = None, max_events_per_rank: int = 3000
) -> pd.DataFrame:
    """The events of step ``step`` on each rank (see the module docstring). At most
    ``max_events_per_rank`` per rank, the longest kept (``attrs["dropped"]`` counts the rest:
    a browser should not draw a million tiny kernels). Empty without Kineto steps."""
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype=object if c in ("lane", "name", "kind") else float)
            for c in TIMELINE_COLUMNS
        }
    )
    empty.attrs["dropped"] = 0
    steps = ds.to_pandas("steps")
    steps = steps[(steps["source"].astype(object) == "kineto") & (steps["step"] == step)]
    if ranks is not None:
        steps = steps[steps["rank"].isin(ranks)]
    if steps.empty:
        return empty
    origin = int(steps["start_ns"].min())
    parts, dropped = [], 0
    events: dict[int, pd.DataFrame] = {}  # only the ranks shown are read, each from its own parts
    for s in steps.sort_values("rank").itertuples(index=False):
        lo, hi = int(s.start_ns), int(s.start_ns) + int(s.dur_ns)
        if s.rank not in events:
            events[s.rank] = ds.rank_events(int(s.rank)).to_pandas()
        ev = events[s.rank]
        e = ev[(ev["rank"] == s.rank) & (ev["start_ns"] >= lo) & (ev["start_ns"] < hi)]
        e = e[~e["name"].astype(str).str.match(r"^ProfilerStep\s*#")]
        cat = e["cat"].astype(str)
        classes = (
            classify(e["name"].astype(str).tolist())["kernel_class"].to_numpy()
            if len(e)
            else np.array([])
        )
        is_gpu = cat.isin(_GPU_CATS).to_numpy() & e["stream"].notna().to_numpy()
        is_range = (cat == "user_annotation").to_numpy()
        is_comm_op = (cat == "cpu_op").to_numpy() & (classes == COMMUNICATION)
        e = e[is_gpu | is_range | is_comm_op].assign(
            _gpu=is_gpu[is_gpu | is_range | is_comm_op],
            _class=classes[is_gpu | is_range | is_comm_op],
        )
        if len(e) > max_events_per_rank:
            dropped += len(e) - max_events_per_rank
            e = e.nlargest(max_events_per_rank, "dur_ns")
        if e.empty:
            continue
        e = e.sort_values("start_ns", kind="stable")
        names = e["name"].astype(str).to_numpy()
        kind = np.where(
            [bool(DATALOADER_EVENT_RE.match(n)) for n in names], "data loading",
            np.where(e["_class"].to_numpy() == COMMUNICATION, "communication",
                     np.where(e["_class"].to_numpy() == MEMORY, "memory",
                              np.where(e["_gpu"].to_numpy(), "computation", "label"))),
        )  # fmt: skip
        start = e["start_ns"].to_numpy(dtype=np.int64)
        dur = e["dur_ns"].fillna(0).to_numpy(dtype=np.int64)
        lane = np.empty(len(e), dtype=object)
        order = np.zeros(len(e), dtype=np.int64)
        gpu = e["_gpu"].to_numpy()
        streams = e["stream"].to_numpy()
        tids = e["tid"].to_numpy()
        thread_ids = {t: i for i, t in enumerate(sorted({int(t) for t in tids[~gpu]}))}
        for t, idx in thread_ids.items():
            sel = np.flatnonzero(~gpu & (tids == t))
            depth = _depths(start[sel], start[sel] + dur[sel])
            lane[sel] = [f"rank {s.rank} · CPU {idx}" + (f" · {d}" if d else "") for d in depth]
            order[sel] = idx * (_MAX_DEPTH + 1) + depth
        for j in np.flatnonzero(gpu):
            lane[j] = f"rank {s.rank} · stream {int(streams[j])}"
            order[j] = 1000 + int(streams[j])
        parts.append(
            pd.DataFrame(
                {
                    "rank": int(s.rank),
                    "lane": lane,
                    "lane_order": int(s.rank) * 100_000 + order,
                    "name": names,
                    "kind": kind,
                    "start_ms": (start - origin) / 1e6,
                    "dur_ms": dur / 1e6,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)[TIMELINE_COLUMNS] if parts else empty
    out.attrs["dropped"] = dropped
    return out

"""Where every rank stood when the job hung: Flight Recorder progress per process group, the
first collective the ranks disagree on, and the line each rank was at.

Measures, does not judge (``rules.builtin.collective_hang`` judges). Inputs: the hang dumps
(``hang_dumps``, ``fr_entries``, ``fr_groups``, ``hang_stacks``; ``stepscope run``'s stall
watchdog or PyTorch's own Flight Recorder pickles).

Definitions, per process group (its member ranks from the dumps' group lists):

* **Progress** of a rank in the group: the last collective sequence number it enqueued and
  the last it completed (Flight Recorder's ``pg_status``; where absent, the highest sequence
  number among its entries counts as enqueued).
* **Stuck collective**: the lowest sequence number no member has completed,
  ``s = max(last completed) + 1`` (a collective completes on all its ranks together, and a
  rank's own completion mark can lag behind: gloo's worker thread sets it, late under
  load), when some member enqueued it. The group is idle otherwise.
* At ``s``: members that never enqueued it are **missing** (they never entered the
  collective); if every member entered, members whose op or input sizes differ from the
  others' are a **mismatch** (another op, another size; the odd ranks are those against the
  majority, or, on a tie, against what the group ran at the sequence number before); if
  all agree, the collective is
  **stuck** with everyone in it (a network or device problem, not the program).
* The **cause** among several stuck groups: a rank missing from one group's collective is
  usually waiting in another group's, which the first one's missing rank never reaches (a
  circular wait). The ranks' own orders of collectives over all groups (Flight Recorder's
  ``record_id``) tell which rank left the common program: at the first record where the
  ranks disagree, the ranks against the majority (with a tie, against the order the common
  history predicts: the group that followed the last common group before) deviated, and the
  stuck group they should have entered is the cause; the others are consequences. Without
  records to compare, the group entered first (earliest ``time_created_ns``) is the cause.
* **Where a rank was**: the innermost frame of its main thread's Python stack that is not
  in the Python library, site-packages or stepscope's collectors: the training script's
  file and line.

This follows what PyTorch's ``fr_trace`` analyser looks for (a rank missing from a
collective, then op and size mismatches between the ranks at the same sequence number).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from analyzer.ingest.dataset import JobDataset

__all__ = ["LIBRARY_FRAME_RE", "collective_progress", "hang_mismatches", "rank_locations"]

#: library code (the Python library, site-packages, stepscope's collectors, frozen
#: modules): a frame there is not the line the training script is at
LIBRARY_FRAME_RE = re.compile(
    r"([/\\](site|dist)-packages[/\\]|[/\\]lib[/\\]python\d\.\d+[/\\]|"
    r"[/\\]stepscope[/\\]collectors[/\\]|^<frozen )"
)

MISMATCH_COLUMNS = [
    "group", "group_desc", "group_ranks", "seq", "op", "kind", "ranks_in", "ranks_missing",
    "ranks_odd", "detail", "created_ns", "waited_s", "cause",
]  # fmt: skip


def _table(ds: JobDataset, name: str) -> pd.DataFrame:
    df = ds.table(name).to_pandas()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    return df


def collective_progress(ds: JobDataset) -> pd.DataFrame:
    """Per (group, rank): ``last_enqueued``, ``last_completed``, the group's description and
    member ranks (JSON), and the collective the rank is in (``current_op``, its sequence
    number ``current_seq`` and ``current_sizes``) when it enqueued one it has not completed."""
    cols = [
        "group", "group_desc", "group_ranks", "rank", "node", "last_enqueued", "last_completed",
        "current_seq", "current_op", "current_sizes", "current_created_ns",
    ]  # fmt: skip
    groups, entries = _table(ds, "fr_groups"), _table(ds, "fr_entries")
    if groups.empty and entries.empty:
        return pd.DataFrame(columns=cols)
    top = (
        entries.groupby(["group", "rank"])["seq"].max()
        if not entries.empty
        else pd.Series(dtype=float)
    )
    rows = []
    keys = set(zip(groups["group"], groups["rank"], strict=True)) if not groups.empty else set()
    keys |= set(top.index)
    for group, rank in sorted(keys, key=lambda k: (str(k[0]), int(k[1]))):
        g = groups[(groups["group"] == group) & (groups["rank"] == rank)]
        row = g.iloc[0].to_dict() if len(g) else {"node": None, "group_desc": None, "ranks": None}
        enq = _num(row.get("last_enqueued"))
        if enq is None or enq < 0:
            enq = _num(top.get((group, rank)))
        done = _num(row.get("last_completed"))
        done = -1 if done is None else done
        mine = entries[(entries["group"] == group) & (entries["rank"] == rank)]
        cur = mine[mine["seq"] == done + 1] if enq is not None and enq > done else mine.iloc[:0]
        desc = row.get("group_desc")
        if desc is None and len(mine):
            desc = mine["group_desc"].dropna().iloc[0] if mine["group_desc"].notna().any() else None
        rows.append(
            {
                "group": str(group),
                "group_desc": desc,
                "group_ranks": row.get("ranks"),
                "rank": int(rank),
                "node": row.get("node") if len(g) else _first(mine, "node"),
                "last_enqueued": enq if enq is not None else -1,
                "last_completed": done,
                "current_seq": int(done + 1) if len(cur) else None,
                "current_op": _first(cur, "op"),
                "current_sizes": _first(cur, "input_sizes"),
                "current_created_ns": _num(_first(cur, "time_created_ns")),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def _num(v: Any) -> int | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    return int(v)


def _first(frame: pd.DataFrame, col: str) -> Any:
    vals = frame[col].dropna() if len(frame) else frame.get(col, pd.Series(dtype=object))
    return vals.iloc[0] if len(vals) else None


def hang_mismatches(ds: JobDataset) -> pd.DataFrame:
    """One row per process group stuck at a collective (module docstring): ``seq``, ``op``,
    ``kind`` (missing | op | size | stuck), ``ranks_in`` / ``ranks_missing`` (lists),
    ``detail``, ``created_ns`` (when the first rank entered it), ``waited_s`` (from then to
    the last dump), ``cause`` (True for the group entered first; the others follow from it)."""
    prog = collective_progress(ds)
    if prog.empty:
        return pd.DataFrame(columns=MISMATCH_COLUMNS)
    entries = _table(ds, "fr_entries")
    dumps = _table(ds, "hang_dumps")
    last_dump = int(dumps["time_ns"].max()) if dumps["time_ns"].notna().any() else None
    dumped = {int(r) for r in dumps["rank"].dropna()}
    rows = []
    for group, g in prog.groupby("group", sort=True):
        members = _members(g)
        members_dumped = sorted(members & dumped) if dumped else sorted(members)
        have = g.set_index("rank")
        # a collective completes on all its ranks together, so one rank's mark is the
        # group's (a rank's own mark can lag: gloo's worker thread sets it, late under load)
        seq = int(have["last_completed"].max()) + 1
        if seq > int(have["last_enqueued"].max()):
            continue  # idle: nothing enqueued that a member has not completed
        ranks_in = sorted(int(r) for r in have.index if have.loc[r, "last_enqueued"] >= seq)
        missing = sorted(set(members_dumped) - set(ranks_in))
        at = entries[(entries["group"] == group) & (entries["seq"] == seq)]
        created = at["time_created_ns"].dropna()
        created_ns = int(created.min()) if len(created) else None
        ops = at.groupby("rank")["op"].first().to_dict() if len(at) else {}
        sizes = at.groupby("rank")["input_sizes"].first().to_dict() if len(at) else {}
        before = entries[(entries["group"] == group) & (entries["seq"] == seq - 1)]
        op = _majority(ops.values(), prefer=_majority(before["op"]))
        odd: list[int] = []
        if missing:
            kind = "missing"
            detail = (
                f"rank{'s' if len(missing) > 1 else ''} {_ranks(missing)} never entered "
                f"{op or 'the collective'} #{seq}; rank{'s' if len(ranks_in) > 1 else ''} "
                f"{_ranks(ranks_in)} did"
            )
        elif len(set(ops.values())) > 1:
            kind = "op"
            odd = sorted(int(r) for r, o in ops.items() if o != op)
            detail = "; ".join(f"rank {r}: {o}" for r, o in sorted(ops.items()))
        elif len(set(sizes.values())) > 1:
            kind = "size"
            usual = _majority(sizes.values(), prefer=_majority(before["input_sizes"]))
            odd = sorted(int(r) for r, z in sizes.items() if z != usual)
            detail = "; ".join(f"rank {r}: {z}" for r, z in sorted(sizes.items()))
        else:
            kind = "stuck"
            detail = f"every rank entered {op or 'the collective'} #{seq}; none completed it"
        waited = (last_dump - created_ns) / 1e9 if last_dump and created_ns else None
        rows.append(
            {
                "group": str(group),
                "group_desc": _first(g, "group_desc"),
                "group_ranks": sorted(members),
                "seq": seq,
                "op": op,
                "kind": kind,
                "ranks_in": ranks_in,
                "ranks_missing": missing,
                "ranks_odd": odd,
                "detail": detail,
                "created_ns": created_ns,
                "waited_s": waited,
                "cause": False,
            }
        )
    out = pd.DataFrame(rows, columns=MISMATCH_COLUMNS)
    if not out.empty:
        out.loc[_cause(out, entries), "cause"] = True
        out = out.sort_values(["cause", "created_ns"], ascending=[False, True], ignore_index=True)
    return out


def _cause(stuck: pd.DataFrame, entries: pd.DataFrame) -> Any:
    """The index of the stuck group that caused the others (module docstring)."""
    split = _divergence(entries)
    if split is not None:
        deviants, expected = split
        for i, row in stuck.iterrows():
            if row["group"] == expected and set(row["ranks_missing"]) & deviants:
                return i
    return stuck["created_ns"].fillna(np.inf).astype(float).idxmin()


def _divergence(entries: pd.DataFrame) -> tuple[set[int], str] | None:
    """The ranks that left the common order of collectives, and the group they should have
    entered next; None when the ranks never disagree or the records cannot say."""
    if entries.empty or entries["record_id"].isna().all():
        return None
    order = entries.dropna(subset=["record_id"]).sort_values("record_id")
    per_rank = {
        int(r): dict(zip(g["record_id"].astype(int), g["group"].astype(str), strict=True))
        for r, g in order.groupby("rank")
    }
    if len(per_rank) < 2:
        return None
    common = sorted(set.intersection(*(set(v) for v in per_rank.values())))
    history: list[str] = []
    for rid in common:
        at = {r: per_rank[r][rid] for r in per_rank}
        values = list(at.values())
        if len(set(values)) == 1:
            history.append(values[0])
            continue
        top = max(set(values), key=values.count)
        if values.count(top) * 2 > len(values):  # a majority: the others deviated
            return {r for r, g in at.items() if g != top}, top
        if not history:
            return None
        followers = [b for a, b in itertools.pairwise(history) if a == history[-1]]
        if not followers:
            return None
        expected = max(set(followers), key=followers.count)
        deviants = {r for r, g in at.items() if g != expected}
        return (deviants, expected) if deviants and len(deviants) < len(at) else None
    return None


def _members(g: pd.DataFrame) -> set[int]:
    members: set[int] = set()
    for text in g["group_ranks"].dropna():
        try:
            members |= {int(r) for r in json.loads(text)}
        except (TypeError, ValueError):
            continue
    return members or {int(r) for r in g["rank"]}


def _majority(values: Any, prefer: Any = None) -> Any:
    """The most common value; on a tie, ``prefer`` when it is among the tied (the value the
    ranks agreed on before), else any of them."""
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return None
    best = max(vals.count(v) for v in set(vals))
    tied = [v for v in set(vals) if vals.count(v) == best]
    return prefer if prefer in tied else sorted(tied, key=str)[0]


def _ranks(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks)


def rank_locations(ds: JobDataset) -> pd.DataFrame:
    """Per rank with a Python stack in a dump: where its main thread was. ``file``, ``line``,
    ``function``, ``code`` of the innermost frame in the training script's own code (module
    docstring), and ``innermost`` (``file:line function`` of the innermost frame at all)."""
    cols = ["rank", "node", "file", "line", "function", "code", "innermost"]
    stacks = _table(ds, "hang_stacks")
    if stacks.empty:
        return pd.DataFrame(columns=cols)
    main = stacks[stacks["main"].fillna(False).astype(bool)]
    rows = []
    for rank, frames in main.groupby("rank", sort=True):
        frames = frames.sort_values("depth")
        own = frames[[not LIBRARY_FRAME_RE.search(f or "") for f in frames["file"]]]
        pick = own.iloc[-1] if len(own) else frames.iloc[-1]
        inner = frames.iloc[-1]
        rows.append(
            {
                "rank": int(rank),
                "node": pick["node"],
                "file": pick["file"],
                "line": _num(pick["line"]),
                "function": pick["function"],
                "code": pick.get("code"),
                "innermost": f"{inner['file']}:{_num(inner['line'])} {inner['function']}",
            }
        )
    return pd.DataFrame(rows, columns=cols)

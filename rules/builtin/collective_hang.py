"""CollectiveHang — stepscope rule: the job hung; which rank, which collective, which line."""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from rules.base import Finding, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    import pandas as pd

    from analyzer.job import Job


class CollectiveHangParams(RuleParams):
    pass


class CollectiveHang(Rule):
    id: ClassVar[str] = "CollectiveHang"
    title: ClassVar[str] = "The job hung in a collective"
    checks: ClassVar[str] = (
        "From the hang dumps (`stepscope run`'s stall watchdog, or PyTorch's own Flight "
        "Recorder pickles; a dump written on SIGTERM counts only if its rank had stalled "
        "for the watchdog's timeout): per process group, the first collective its ranks "
        "have not all completed; the ranks that never entered it, or that entered another "
        "op or size; which stuck group caused the others; and the line of the training script each "
        "missing rank was at (its main thread's Python stack)."
    )
    why: ClassVar[str] = (
        "A rank that never enters a collective leaves the others waiting in it until the "
        "collective times out (10 to 30 minutes) or the job reaches its MaxRuntime, every "
        "instance billing meanwhile, and nothing in the job's own output says which rank or "
        "why."
    )
    recommendation: ClassVar[str] = (
        "Look at the line the missing rank was at: a data-dependent branch or an early "
        "`continue`/`break` that skips a collective on some ranks, an exception caught on one "
        "rank only, uneven data (one rank runs out of batches first), or a collective issued "
        "under a condition that differs between ranks. Every rank must call the same "
        "collectives of a group in the same order with the same sizes."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[RuleParams]] = CollectiveHangParams
    leads: ClassVar[bool] = True

    def evaluate(self, job: Job, params: CollectiveHangParams) -> list[Finding] | str:
        dumps = job.hang_dumps()
        if dumps.empty:
            return (
                "no hang dumps in this job (`stepscope run`'s stall watchdog writes them, "
                "in hangs/, when no rank makes a step for --stall-timeout seconds)"
            )
        reason = dumps["reason"].astype(object)
        hung = (reason != "SIGTERM") | (dumps["stalled_s"] >= dumps["timeout_s"])
        if not hung.any():
            return (
                "the hang dumps were written on SIGTERM (a stop) while the ranks still made "
                "steps: no hang"
            )
        stuck, where = job.hang_mismatches(), job.rank_locations()
        located = {int(r.rank): r for r in where.itertuples(index=False)}
        if stuck.empty:
            return [self._stalled_without_collective(dumps, located)]
        findings = []
        causes = stuck[stuck["cause"]]
        consequences = stuck[~stuck["cause"]]
        standing = _where_ranks_stand(job.collective_progress(), located)
        for row in causes.itertuples(index=False):
            f = self._stuck(row, located, consequences)
            f.evidence["where_ranks_stand"] = standing
            findings.append(f)
        return findings

    def _stuck(self, row: Any, located: dict[int, Any], later: pd.DataFrame) -> Finding:
        group = _group(row.group, row.group_desc, row.group_ranks)
        waited = f"{row.waited_s:.1f} s" if row.waited_s == row.waited_s and row.waited_s else "?"
        others = row.ranks_in
        who = "the other rank" if len(others) == 1 else f"the other {len(others)} ranks"
        if row.kind == "missing":
            ranks = row.ranks_missing
            title = (
                f"Rank{'s' if len(ranks) > 1 else ''} {_list(ranks)} never entered "
                f"{row.op or 'a collective'} #{row.seq} of {group}"
            )
            at = "; ".join(_at(r, located) for r in ranks)
            message = (
                f"never entered {row.op or 'the collective'} #{row.seq} of {group}; "
                f"{at}; {who} ({_list(others)}) waited in it at least {waited} (until the "
                "dumps)"
            )
        elif row.kind in ("op", "size"):
            ranks = list(row.ranks_odd) + [r for r in row.ranks_in if r not in row.ranks_odd]
            what = "another op" if row.kind == "op" else "another message size"
            title = f"Ranks called {what} at collective #{row.seq} of {group}"
            message = (
                f"at collective #{row.seq} of {group} the ranks disagree ({row.detail}); each "
                f"waits for a partner that never comes, at least {waited}; "
                + "; ".join(_at(r, located) for r in ranks)
            )
        else:
            ranks = row.ranks_in
            title = f"Every rank is stuck in {row.op or 'a collective'} #{row.seq} of {group}"
            message = (
                f"every rank entered {row.op or 'the collective'} #{row.seq} of {group} and none "
                f"completed it in {waited}: the program agrees, the transport does not (a dead "
                "link, a hung device, a network partition)"
            )
        # what the hang costs so far: each waiting rank holds one GPU idle for the wait
        waiting = len(others) if row.kind == "missing" else len(row.ranks_in)
        gpu_hours = (
            waiting * float(row.waited_s) / 3600.0
            if row.waited_s == row.waited_s and row.waited_s
            else None
        )
        if gpu_hours is not None:
            message += (
                f"; {waiting} waiting rank{'s' if waiting != 1 else ''} × {waited}: "
                f"{gpu_hours:.3g} GPU-hours idle so far (a GPU per rank)"
            )
        if not later.empty:
            message += "; it also holds up " + ", ".join(
                f"#{r.seq} of {_group(r.group, r.group_desc, r.group_ranks)}"
                for r in later.itertuples(index=False)
            )
        first = ranks[0] if ranks else None
        node = getattr(located.get(first), "node", None) if first is not None else None
        place = f"rank {first}" + (f" on {node}" if node else "") if first is not None else group
        return self.finding(
            title=title,
            message=message,
            evidence={
                "kind": row.kind,
                "process_group": str(row.group),
                "group_desc": row.group_desc,
                "group_ranks": list(row.group_ranks),
                "seq": int(row.seq),
                "op": row.op,
                "ranks_in": list(row.ranks_in),
                "ranks_missing": list(row.ranks_missing),
                "ranks_odd": list(row.ranks_odd),
                "detail": row.detail,
                "waited_s": None if row.waited_s != row.waited_s else round(row.waited_s, 3),
                "waiting_ranks": waiting,
                "idle_gpu_hours": None if gpu_hours is None else round(gpu_hours, 6),
                "locations": {str(r): _location(located[r]) for r in (ranks or []) if r in located},
                "also_stuck": [
                    {"process_group": str(r.group), "seq": int(r.seq), "kind": r.kind}
                    for r in later.itertuples(index=False)
                ],
            },
            where=place + f", process group {row.group}",
        )

    def _stalled_without_collective(self, dumps: pd.DataFrame, located: dict[int, Any]) -> Finding:
        ranks = sorted(int(r) for r in dumps["rank"].dropna())
        stalled = float(dumps["stalled_s"].max())
        at = "; ".join(_at(r, located) for r in ranks if r in located)
        return self.finding(
            title=f"No step for {stalled:.0f} s, with no collective stuck",
            message=(
                f"rank{'s' if len(ranks) > 1 else ''} {_list(ranks)} made no optimizer step for "
                f"{stalled:.0f} s and no process group has a collective its ranks have not all "
                f"completed: the stall is outside communication{'; ' + at if at else ''}"
            ),
            evidence={
                "kind": "no_collective",
                "ranks": ranks,
                "stalled_s": round(stalled, 3),
                "locations": {str(r): _location(located[r]) for r in ranks if r in located},
            },
            severity="warning",
            where=f"rank{'s' if len(ranks) > 1 else ''} {_list(ranks)}",
        )


def _where_ranks_stand(progress: pd.DataFrame, located: dict[int, Any]) -> list[dict[str, Any]]:
    """One row per rank: the collectives it is in (not completed) and the line it is at."""
    rows = []
    ranks = sorted({int(r) for r in progress["rank"]} | set(located))
    for rank in ranks:
        mine = progress[(progress["rank"] == rank) & progress["current_seq"].notna()]
        waiting = ", ".join(
            f"{r.current_op} #{int(r.current_seq)} of group {r.group}"
            for r in mine.itertuples(index=False)
        )
        loc = located.get(rank)
        rows.append(
            {
                "rank": rank,
                "node": getattr(loc, "node", None),
                "in_collective": waiting or "none",
                "at": _line(loc) if loc is not None else "no stack (no dump from this rank)",
                "code": getattr(loc, "code", None),
            }
        )
    return rows


def _list(ranks: Any) -> str:
    return ", ".join(str(int(r)) for r in ranks)


def _group(name: Any, desc: Any, ranks: Any) -> str:
    label = f"process group {name}"
    if isinstance(desc, str) and desc and desc != "undefined":
        label += f" ({desc})"
    if ranks is not None and len(ranks):
        label += f" (ranks {_list(ranks)})"
    return label


def _location(loc: Any) -> dict[str, Any]:
    return {
        "file": loc.file,
        "line": loc.line,
        "function": loc.function,
        "code": loc.code,
        "innermost": loc.innermost,
    }


def _at(rank: int, located: dict[int, Any]) -> str:
    loc = located.get(rank)
    if loc is None:
        return f"rank {rank} left no stack (no dump from it: it may have died)"
    code = f": `{loc.code}`" if isinstance(loc.code, str) and loc.code else ""
    return f"rank {rank} was at {_line(loc)}{code}"


def _line(loc: Any) -> str:
    """``file.py:212 in main``: where a rank's main thread was."""
    return f"{PurePath(str(loc.file)).name}:{loc.line} in {loc.function}"

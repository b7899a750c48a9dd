"""One rule's findings that share a pattern, said once: "all 64 ranks: 120.3–172.3 ms of
communication not overlapped by computation (43.3–61.8% of GPU busy time); worst: rank 0".

Why in the report layer, over the findings, and not in each rule: a rule judges each rank,
node or GPU on its own (that is what its evidence is about), and ``report.json`` keeps every
one of those findings; what a reader needs of 64 identical verdicts is one line and a table.
A pure function, so every output (Markdown, HTML, JUnit, the dashboard) groups the same way.

Two findings share a pattern when they come from the same rule at the same severity, about
the same kind of place (a rank, a node, a GPU of a node, a stream of a rank), with the same
evidence keys and the same message once places and numbers are masked ("underused in # of #
scans" and "fluctuating in # of # scans" stay apart). Places sort numerically everywhere:
rank 9 before rank 10, algo-2 before algo-10.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer.natural import natural_key
from rules.base import Finding, GroupFigure
from stepscope.report.model import FindingGroup, Report
from stepscope.report.rule_info import group_figure

__all__ = ["group_findings", "groups_of", "message_of", "place_key", "spans"]

_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RANK = re.compile(r"^rank (\d+)(?:, (.+))?$")
_NODE = re.compile(r"^node ([^,]+)(?:, (.+))?$")


#: sort key of a place that reads numbers as numbers ("rank 9" before "rank 10")
place_key = natural_key


def message_of(f: Finding) -> str:
    """The finding's message without its place in front: every output shows ``where`` beside
    it, so "rank 0: rank 0: ..." never reads twice (a rule that still leads with it)."""
    for prefix in (f.where, f.where.removeprefix("node ")):
        if prefix and f.message.startswith(prefix + ": "):
            return f.message[len(prefix) + 2 :]
    return f.message


#: how a finding judged on another source names it (rules/builtin/_metrics_source.py's words)
_SOURCE_LABELS = {"cloudwatch": "CloudWatch"}


@dataclass(frozen=True)
class _Place:
    kind: str  # rank | node | other
    rank: int | None
    node: str | None
    #: what follows the rank or node ("stream 7", "gpu0"), None without
    part: str | None


def _place(where: str) -> _Place:
    m = _RANK.match(where)
    if m:
        return _Place("rank", int(m.group(1)), None, m.group(2))
    m = _NODE.match(where)
    if m:
        return _Place("node", None, m.group(1), m.group(2))
    return _Place("other", None, None, where)


def _pattern(f: Finding, place: _Place) -> tuple[Any, ...]:
    msg = message_of(f)
    for name in (place.node, place.part):
        if name:
            msg = msg.replace(name, "<place>")
    part = _NUMBER.sub("#", place.part) if place.part and place.kind != "other" else place.part
    return (f.rule, f.severity, place.kind, part, _NUMBER.sub("#", msg), tuple(sorted(f.evidence)))


def group_findings(
    findings: Sequence[Finding],
    *,
    ranks: int = 0,
    nodes: int = 0,
    gpus: int = 0,
    rule_titles: dict[str, str] | None = None,
) -> list[FindingGroup]:
    """``findings`` (in report order) grouped by pattern, each group in numeric place order,
    the groups in the order of their first finding. ``ranks``, ``nodes``, ``gpus``: the job's
    counts, for "all 64 ranks" / "ranks 3 and 17 of 64" (0: unknown, no "of N")."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    places = [_place(f.where) for f in findings]
    for i, (f, place) in enumerate(zip(findings, places, strict=True)):
        by_key.setdefault(_pattern(f, place), []).append(i)
    groups: list[FindingGroup] = []
    for idx in by_key.values():
        idx = sorted(idx, key=lambda i: place_key(findings[i].where))
        first = findings[idx[0]]
        fig = _figure(first)
        worst = _worst(findings, idx, fig)
        if len(idx) == 1:
            groups.append(
                FindingGroup(
                    rule=first.rule,
                    severity=first.severity,
                    title=first.title,
                    where=first.where,
                    message=message_of(first),
                    count=1,
                    findings=idx,
                    locations=[first.where],
                    worst=idx[0],
                )
            )
            continue
        where = _where([places[i] for i in idx], ranks=ranks, nodes=nodes, gpus=gpus)
        groups.append(
            FindingGroup(
                rule=first.rule,
                severity=first.severity,
                title=(rule_titles or {}).get(first.rule, first.title),
                where=where,
                message=_line(findings, idx, fig, worst),
                count=len(idx),
                findings=idx,
                locations=[findings[i].where for i in idx],
                worst=worst,
            )
        )
    groups.sort(key=lambda g: min(g.findings))
    return groups


def groups_of(report: Report) -> list[FindingGroup]:
    """What every output shows of ``report``'s findings: its groups; a report built without
    them (one constructed by hand, say) shows each finding as a group of one."""
    if report.finding_groups or not report.findings:
        return report.finding_groups
    return [
        FindingGroup(
            rule=f.rule,
            severity=f.severity,
            title=f.title,
            where=f.where,
            message=message_of(f),
            count=1,
            findings=[i],
            locations=[f.where],
            worst=i,
        )
        for i, f in enumerate(report.findings)
    ]


def _figure(f: Finding) -> GroupFigure | None:
    return group_figure(f)  # the rule class says how its group line reads


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v == v else None


def _worst(findings: Sequence[Finding], idx: list[int], fig: GroupFigure | None) -> int:
    if fig is None:
        return idx[0]
    scored = [(v, i) for i in idx if (v := _number(findings[i].evidence.get(fig.key))) is not None]
    if not scored:
        return idx[0]
    # the first of equal ones, in place order
    best = (
        max(scored, key=lambda s: s[0]) if fig.worst == "max" else min(scored, key=lambda s: s[0])
    )
    return best[1]


def _range(values: Iterable[Any], digits: int) -> str | None:
    nums = [v for v in (_number(x) for x in values) if v is not None]
    if not nums:
        return None
    lo, hi = f"{min(nums):.{digits}f}", f"{max(nums):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def _line(findings: Sequence[Finding], idx: list[int], fig: GroupFigure | None, worst: int) -> str:
    """The group's one line: the figure's range, the second figure's, the worst place."""
    first = findings[idx[0]]
    lead = (
        _range((findings[i].evidence.get(fig.key) for i in idx), fig.digits)
        if fig is not None
        else None
    )
    if fig is None or lead is None:
        line = f"e.g. {first.where}: {message_of(first)}"
    else:
        line = fig.text.format(lead)
        if fig.then is not None:
            key, text, digits = fig.then
            second = _range((findings[i].evidence.get(key) for i in idx), digits)
            if second is not None:
                line += f" ({text.format(second)})"
        line += f"; worst: {findings[worst].where}"
        source, res = first.evidence.get("metrics_source"), first.evidence.get("resolution_s")
        if isinstance(source, str) and _number(res) is not None:
            line += f" (judged on {_SOURCE_LABELS.get(source, source)}'s {res:g} s datapoints)"
    return line


def spans(numbers: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 7, 9]`` -> ``"0–3, 7 and 9"``: runs of three or more as a range."""
    nums = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{nums[i]}–{nums[j]}")
        else:
            parts += [str(n) for n in nums[i : j + 1]]
        i = j + 1
    return _and(parts)


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _names(names: Iterable[str], most: int = 4) -> str:
    """Node names in numeric order, all of them up to ``most``, else the first few and the last."""
    ordered = sorted(set(names), key=place_key)
    if len(ordered) <= most:
        return _and(ordered)
    return f"{', '.join(ordered[: most - 1])}, … {ordered[-1]}"


def _of(n: int, total: int, unit: str) -> str:
    """ "all 64 ranks", "3 of 64 ranks", "3 ranks" (total unknown)."""
    if total and n == total:
        return f"both {unit}s" if total == 2 else f"all {total} {unit}s"
    return f"{n} of {total} {unit}s" if total > n else f"{n} {unit}{'s' if n != 1 else ''}"


def _where(places: list[_Place], *, ranks: int, nodes: int, gpus: int) -> str:
    """Where a group's findings are, in words: "all 64 ranks", "ranks 3 and 17 of 64",
    "algo-2 and algo-3 of 5 nodes", "6 of 10 GPUs on algo-2, algo-3 and algo-5"."""
    kind = places[0].kind
    parts = {p.part for p in places if p.part}
    if kind == "rank":
        ids = sorted({p.rank for p in places if p.rank is not None})
        if ranks and len(ids) == ranks and ranks > 1:
            text = _of(ranks, ranks, "rank")
        elif ranks > len(ids) and ids[-1] < ranks:  # ids 0..N-1: "ranks 3 and 17 of 64"
            text = f"rank{'s' if len(ids) > 1 else ''} {spans(ids)} of {ranks}"
        else:  # sparse ids (traces of some ranks only): "ranks 9 and 130 (2 of 4 ranks)"
            text = f"rank{'s' if len(ids) > 1 else ''} {spans(ids)}" + (
                f" ({_of(len(ids), ranks, 'rank')})" if ranks > len(ids) else ""
            )
        if len(places) > len(ids):  # more than one stream or device of a rank
            noun = _DIGITS.sub("", next(iter(parts))).split()[0] if parts else "place"
            text += f" ({len(places)} {noun}s)"
        return text
    if kind == "node":
        names = [p.node for p in places if p.node]
        if parts and all(p.part and p.part.startswith("gpu") for p in places):
            n = len({(p.node, p.part) for p in places})
            return (
                _of(n, gpus, "GPU")
                if gpus and n == gpus
                else f"{_of(n, gpus, 'GPU')} on {_names(names)}"
            )
        if len(places) > len(set(names)):
            return (
                f"{_of(len(set(names)), nodes, 'node')} ({len(places)} findings): {_names(names)}"
            )
        if nodes and len(set(names)) == nodes:
            return _of(nodes, nodes, "node")
        return f"{_names(names)}" + (f" of {nodes} nodes" if nodes > len(set(names)) else "")
    wheres = sorted({p.part or "" for p in places}, key=place_key)
    return wheres[0] if len(wheres) == 1 else _and(wheres)

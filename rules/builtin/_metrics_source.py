"""Judging system metrics that come from more than one source: the job's files, CloudWatch.

Why: SageMaker's system-metric rules count *data points* (``window``, ``patience``), sized
for SageMaker Debugger's default 500 ms sampling; SageMaker's CloudWatch instance metrics
have one datapoint a minute (``analyzer.ingest.cloudwatch_metrics``). Counted as they are,
``patience = 1000`` would wait 16 hours. So the nodes whose metrics came from CloudWatch are
judged on their own, with each count scaled to the same span of time (1000 × 0.5 s = 500 s
→ 9 one-minute datapoints), and their findings say so: ``metrics_source``, ``resolution_s``
and the counts used (``scaled_params``). A job whose metrics are all its own files is
judged exactly as before, on the job itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from rules.base import Finding

if TYPE_CHECKING:
    from analyzer.job import Job

#: a rule's parameters: a RuleParams model (or a protocol of one, as the bottleneck rules')
P = TypeVar("P")

#: the sampling interval (s) SageMaker's data-point counts are meant for: Debugger's default
#: ``ProfilingIntervalInMilliseconds`` (500), what the SDK's rule defaults assume
REFERENCE_INTERVAL_S = 0.5

#: how a finding's message names a metrics source (``system_metrics.source``)
SOURCE_LABELS = {"cloudwatch": "CloudWatch"}


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def scaled_counts(params: Any, counts: Mapping[str, int], resolution_s: float) -> dict[str, int]:
    """Each count parameter (name -> its least useful value) over the same time at
    ``resolution_s``."""
    return {
        name: max(least, math.ceil(getattr(params, name) * REFERENCE_INTERVAL_S / resolution_s))
        for name, least in counts.items()
    }


def by_metrics_source(
    job: Job,
    params: P,
    judge: Callable[[Job, P], list[Finding] | str],
    *,
    counts: Mapping[str, int],
) -> list[Finding] | str:
    """``judge`` on each group of nodes: the files' as given, CloudWatch's with ``counts``
    scaled to its resolution and its findings marked. Findings of every group that could be
    judged; when none could, why (each group's reason)."""
    groups = job.metrics_source_groups()
    if list(groups) == [None]:
        return judge(job, params)
    findings: list[Finding] = []
    reasons: list[str] = []
    judged = False
    for key, group_job in groups.items():
        sub = job if group_job is None else group_job
        if key is None:
            out = judge(sub, params)
            extra: dict[str, Any] = {}
        else:
            source, resolution = key
            scaled = scaled_counts(params, counts, resolution)
            out = judge(sub, cast(Any, params).model_copy(update=scaled))
            extra = {"metrics_source": source, "resolution_s": resolution, "scaled_params": scaled}
        if isinstance(out, str):
            label = "the job's files" if key is None else f"{key[0]} ({key[1]:g} s datapoints)"
            reasons.append(f"{label}: {out}" if len(groups) > 1 or key is not None else out)
            continue
        judged = True
        for f in out:
            f.evidence.update(extra)
            if (
                key is not None
            ):  # the verdict says what it stood on: minute averages, not 0.5 s samples
                f.message += f" (judged on {source_label(key[0])}'s {key[1]:g} s datapoints)"
        findings += out
    return findings if judged else "; ".join(reasons)

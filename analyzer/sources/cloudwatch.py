"""SageMaker's CloudWatch instance metrics of one training job, as source objects.

Why: SageMaker publishes CPU, memory, GPU, GPU-memory and disk utilization to CloudWatch for
*every* training job, profiled or not, so any job name has system metrics to judge with no
setup at all (the job's own files, where it has them, win: ``analyzer.ingest.cloudwatch_metrics``).

What SageMaker publishes — source: AWS, *Amazon SageMaker AI Developer Guide*, "Amazon
SageMaker AI metrics in Amazon CloudWatch", section "SageMaker AI job metrics": namespace
``/aws/sagemaker/TrainingJobs``, dimension ``Host`` = ``<training-job-name>/algo-<instance
number in cluster>``, "available at a 1-minute frequency", unit Percent:

* ``CPUUtilization``: the *sum* of each CPU core's utilization (0-100 each: 0-400 % with 4 CPUs)
* ``GPUUtilization``, ``GPUMemoryUtilization``: 0-100 *multiplied by the number of GPUs*
* ``MemoryUtilization``, ``DiskUtilization``: 0-100 %

so the parser divides the summed ones by the node's CPU / GPU count (:func:`instance_shape`)
into a per-node average share. How long CloudWatch keeps them — source: *Amazon CloudWatch
API Reference*, GetMetricStatistics (GetMetricData's ``Period``): 60-second datapoints for
15 days, 5-minute ones for 63 days, 1-hour ones for 455 days, and a query that starts
further back than a period's lifetime gets no datapoints (:func:`period_for`).

Objects: one per host and UTC day of the job, ``cloudwatch/<host>/<YYYY-MM-DD>.json``.
Listing asks CloudWatch once (GetMetricData, up to 500 queries a call) for every host's
per-hour ``SampleCount`` of each metric: a host-day without a datapoint is not listed, and
its counts are the object's fingerprint, so ingest's cache reads a finished day once and
reads the day a running job is in again only when new datapoints came. Reading an object
is one paginated GetMetricData of the five metrics' ``Average`` over that host-day at the
finest period CloudWatch still keeps; the answer is stored as a JSON document
(:data:`DOC_FORMAT`) that ``analyzer.ingest.cloudwatch_metrics`` parses once into
``system_metrics`` rows. Retries: botocore's standard mode, as for S3 (``aws_client``);
what is still refused becomes a one-line reason (``aws_error``): a counted skip of the
CloudWatch part, never a failure of the job's S3 data.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from analyzer.errors import SourceError
from analyzer.natural import natural_key
from analyzer.sources.base import SourceObject
from analyzer.sources.s3 import aws_error

__all__ = [
    "DOC_FORMAT",
    "METRICS",
    "NAMESPACE",
    "ROLE",
    "CloudWatchMetrics",
    "JobWindow",
    "instance_shape",
    "job_window",
    "period_for",
]

log = logging.getLogger("stepscope.sources")

NAMESPACE = "/aws/sagemaker/TrainingJobs"
#: the instance metrics SageMaker publishes for a training job (see the module docstring)
METRICS = (
    "CPUUtilization",
    "MemoryUtilization",
    "GPUUtilization",
    "GPUMemoryUtilization",
    "DiskUtilization",
)
#: the logical keys' top folder
ROLE = "cloudwatch"
#: the ``format`` of the JSON document an object's bytes are
DOC_FORMAT = "stepscope.cloudwatch-instance-metrics/1"
DAY_S = 86_400
PROBE_PERIOD_S = 3_600
#: GetMetricData's limit on queries per request
MAX_QUERIES = 500
DEFAULT_THREADS = 4  # GetMetricData allows 50 requests a second per account and region
#: CloudWatch's retention of each period (CloudWatch API reference, GetMetricStatistics), with
#: an hour's margin so a query never starts just past a boundary
_RETENTION = ((60, 15 * DAY_S - 3_600), (300, 63 * DAY_S - 3_600), (3_600, 455 * DAY_S))

_KEY_RE = re.compile(r"^cloudwatch/(?P<host>[^/]+)/(?P<day>\d{4}-\d{2}-\d{2})\.json$")

# ----------------------------------------------------------------------- instance shapes

#: GPUs per SageMaker training instance type (AWS's instance-type pages: P2, P3, P4, P5, P6,
#: G4dn, G5, G6, G6e). Types not listed have no NVIDIA GPU for CloudWatch to sum over, or are
#: unknown here: see :func:`instance_shape`.
_GPUS: dict[str, int] = {
    "ml.p2.xlarge": 1,
    "ml.p2.8xlarge": 8,
    "ml.p2.16xlarge": 16,
    "ml.p3.2xlarge": 1,
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.4xlarge": 1,
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
    "ml.p6-b200.48xlarge": 8,
    **{f"ml.g4dn.{s}": 1 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g4dn.12xlarge": 4,
    **{
        f"ml.{f}.{s}": 1
        for f in ("g5", "g6", "g6e")
        for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
    },
    **{
        f"ml.{f}.{s}": n
        for f in ("g5", "g6", "g6e")
        for s, n in (("12xlarge", 4), ("24xlarge", 4), ("48xlarge", 8))
    },
}
#: families whose instances have NVIDIA GPUs: an unlisted size of one is an unknown count
_GPU_FAMILIES = re.compile(r"^ml\.(p\d|g\d)")
#: vCPUs where the size name does not say (see :func:`instance_shape`)
_VCPUS: dict[str, int] = {"ml.t2.medium": 2, "ml.t3.medium": 2}
_SIZE_RE = re.compile(r"^(?:(?P<n>\d+)?xlarge|large)$")


def instance_shape(instance_type: str | None) -> tuple[int | None, int | None]:
    """(GPUs, vCPUs) of a SageMaker instance type; None where it is not known.

    vCPUs follow EC2's size names (``large`` = 2, ``xlarge`` = 4, ``<n>xlarge`` = 4·n, true
    of every family SageMaker trains on); GPUs come from :data:`_GPUS`, and are 0 for the
    families without GPUs (CloudWatch then publishes no GPU metric either).
    """
    if not instance_type:
        return None, None
    size = instance_type.rsplit(".", 1)[-1]
    vcpus = _VCPUS.get(instance_type)
    m = _SIZE_RE.match(size)
    if vcpus is None and m:
        vcpus = 2 if size == "large" else 4 * int(m.group("n") or 1)
    gpus = _GPUS.get(instance_type)
    if gpus is None and not _GPU_FAMILIES.match(instance_type):
        gpus = 0
    return gpus, vcpus


# ----------------------------------------------------------------------- the job's window


@dataclass(frozen=True)
class JobWindow:
    """The hosts and time span (epoch s) to read, from DescribeTrainingJob."""

    job_name: str
    hosts: tuple[str, ...]
    start: float
    end: float
    instance_type: str | None


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def job_window(job_name: str, describe: Mapping[str, Any], now: float) -> JobWindow | None:
    """From the training start (the instances' billed time starts there; creation before it)
    to the end (now, while the job runs), on every host ``algo-1..N``; None before the job
    has instances. A heterogeneous cluster (``InstanceGroups``) has one type only when all
    its groups share it: SageMaker does not say which host belongs to which group."""
    rc = describe.get("ResourceConfig") or {}
    groups = rc.get("InstanceGroups") or []
    if groups:
        count = sum(int(g.get("InstanceCount") or 0) for g in groups)
        types = {g.get("InstanceType") for g in groups}
        itype = types.pop() if len(types) == 1 else None
    else:
        count = int(rc.get("InstanceCount") or 0)
        itype = rc.get("InstanceType")
    start = _epoch(describe.get("TrainingStartTime")) or _epoch(describe.get("CreationTime"))
    if not count or start is None or start > now:
        return None
    end = _epoch(describe.get("TrainingEndTime"))
    if end is None and describe.get("TrainingJobStatus") in ("Completed", "Failed", "Stopped"):
        end = _epoch(describe.get("LastModifiedTime"))
    end = now if end is None else min(max(end, start), now)
    return JobWindow(job_name, tuple(f"algo-{i}" for i in range(1, count + 1)), start, end, itype)


def period_for(start: float, now: float) -> int:
    """The finest period CloudWatch still keeps for datapoints from ``start`` on."""
    age = now - start
    for period, kept in _RETENTION:
        if age < kept:
            return period
    return _RETENTION[-1][0]


def _floor(t: float, step: int) -> int:
    return math.floor(t / step) * step


def _ceil(t: float, step: int) -> int:
    return math.ceil(t / step) * step


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day, tz=UTC).strftime("%Y-%m-%d")


def _day_start(name: str) -> int:
    return int(datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


# ----------------------------------------------------------------------- the source


class CloudWatchMetrics:
    """The CloudWatch objects of one job (used by ``SageMakerJobSource``, which owns the
    session and DescribeTrainingJob).

    ``clock`` is the time now (epoch s): a running job is read up to it. ``max_datapoints``
    caps the datapoints of one GetMetricData answer (AWS's default, 100,800, when None), so
    pagination can be exercised. After :meth:`list_objects`, :attr:`failure` says why the
    listing could not be made (None when it could).
    """

    def __init__(
        self,
        client: Any,
        *,
        job_name: str,
        region: str,
        describe: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
        threads: int = DEFAULT_THREADS,
        max_datapoints: int | None = None,
    ) -> None:
        self._client = client
        self.job_name = job_name
        self.region = region
        self._describe = describe
        self._clock = clock
        self._threads = max(1, threads)
        self._max_datapoints = max_datapoints
        window = self.window()
        self.gpus, self.vcpus = instance_shape(window.instance_type if window else None)
        self.failure: str | None = None
        self._unavailable: dict[str, str] = {}  # placeholder key -> why
        self._denied: str | None = None  # once GetMetricData is refused, the rest is too
        self._lock = threading.Lock()

    @property
    def what(self) -> str:
        return f"the CloudWatch instance metrics of job {self.job_name!r} in {self.region}"

    @property
    def location(self) -> str:
        return f"cloudwatch://{self.region}{NAMESPACE}/{self.job_name}"

    def window(self) -> JobWindow | None:
        return job_window(self.job_name, self._describe, self._clock())

    # -- listing

    def list_objects(self) -> Iterator[SourceObject]:
        """One object per host and day with datapoints; if CloudWatch cannot be asked, one
        placeholder whose read fails with the reason (ingest counts it as a skip, logs it on
        one line, and tries again next run), so the job's S3 data is still ingested."""
        self.failure = None
        window = self.window()
        if window is None:
            return
        try:
            counts = self._probe(window)
        except SourceError as exc:
            self.failure = str(exc)
            key = f"{ROLE}/{self.job_name}/listing.json"
            self._unavailable[key] = self.failure
            yield SourceObject(
                key=key,
                size=0,
                fingerprint=f"unavailable-{int(self._clock())}",
                location=self.location,
            )
            return
        for (host, day), rows in sorted(
            counts.items(), key=lambda kv: (natural_key(kv[0][0]), kv[0][1])
        ):
            digest = hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:24]
            samples = int(sum(c for _, _, c in rows))
            yield SourceObject(
                key=f"{ROLE}/{host}/{_day_name(day)}.json",
                size=samples * 24,  # about what the document holds per datapoint
                fingerprint=f"hourly-counts-{digest}",
                location=f"{self.location}/{host}/{_day_name(day)}",
            )

    def _probe(self, window: JobWindow) -> dict[tuple[str, int], list[tuple[str, int, float]]]:
        """(host, day) -> [(metric, hour, datapoints)], from one SampleCount per host, metric
        and hour."""
        start = _floor(window.start, PROBE_PERIOD_S)
        end = max(_ceil(window.end, PROBE_PERIOD_S), start + PROBE_PERIOD_S)
        specs = [(host, metric) for host in window.hosts for metric in METRICS]
        out: dict[tuple[str, int], list[tuple[str, int, float]]] = {}
        for first in range(0, len(specs), MAX_QUERIES):
            chunk = specs[first : first + MAX_QUERIES]
            queries = [
                self._query(f"q{i}", host, metric, PROBE_PERIOD_S, "SampleCount")
                for i, (host, metric) in enumerate(chunk)
            ]
            results, _ = self._get_metric_data(queries, start, end)
            for i, (host, metric) in enumerate(chunk):
                ts, values = results.get(f"q{i}", ([], []))
                for t, n in zip(ts, values, strict=True):
                    if n > 0:
                        out.setdefault((host, _floor(t, DAY_S)), []).append(
                            (metric, int(t), float(n))
                        )
        return out

    # -- reading

    def read(self, obj: SourceObject) -> bytes:
        """The object's JSON document: the five metrics' per-period averages over its host-day."""
        if obj.key in self._unavailable:
            raise SourceError(self._unavailable[obj.key])
        m = _KEY_RE.match(obj.key)
        window = self.window()
        if m is None or window is None:
            raise SourceError(f"not a CloudWatch object of job {self.job_name}: {obj.key}")
        host, day = m.group("host"), _day_start(m.group("day"))
        start = max(day, _floor(window.start, PROBE_PERIOD_S))
        end = min(day + DAY_S, max(_ceil(window.end, PROBE_PERIOD_S), start + PROBE_PERIOD_S))
        now = self._clock()
        period = period_for(start, now)
        with self._lock:
            denied = self._denied
        if denied is not None:
            raise SourceError(denied)
        queries = [
            self._query(f"m{i}", host, metric, period, "Average")
            for i, metric in enumerate(METRICS)
        ]
        try:
            results, messages = self._get_metric_data(queries, start, end)
        except SourceError as exc:
            if str(exc).startswith(("access denied", "AWS rejected the credentials")):
                with self._lock:
                    self._denied = str(exc)
            raise
        doc = {
            "format": DOC_FORMAT,
            "namespace": NAMESPACE,
            "job": self.job_name,
            "host": host,
            "instance_type": window.instance_type,
            "gpus": self.gpus,
            "vcpus": self.vcpus,
            "period_s": period,
            "stat": "Average",
            "start": start,
            "end": end,
            "read_at": now,
            "metrics": {
                metric: {
                    "timestamps": results.get(f"m{i}", ([], []))[0],
                    "values": results.get(f"m{i}", ([], []))[1],
                }
                for i, metric in enumerate(METRICS)
            },
            "messages": messages,
        }
        return orjson.dumps(doc)

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        """Read in a few threads (GetMetricData's request rate is limited), in input order."""

        def _one(o: SourceObject) -> tuple[SourceObject, bytes | Exception]:
            try:
                return o, self.read(o)
            except Exception as exc:  # reported per object, by design
                return o, exc

        with ThreadPoolExecutor(self._threads, thread_name_prefix="cloudwatch-read") as pool:
            yield from pool.map(_one, list(objs))

    # -- GetMetricData

    def _query(self, qid: str, host: str, metric: str, period: int, stat: str) -> dict[str, Any]:
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": metric,
                    "Dimensions": [{"Name": "Host", "Value": f"{self.job_name}/{host}"}],
                },
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }

    def _get_metric_data(
        self, queries: Sequence[dict[str, Any]], start: int, end: int
    ) -> tuple[dict[str, tuple[list[float], list[float]]], list[str]]:
        """Every page of one GetMetricData: query id -> (epoch s, values), time ascending, and
        the answer's messages (one line each)."""
        merged: dict[str, tuple[list[float], list[float]]] = {}
        messages: list[str] = []
        kwargs: dict[str, Any] = {
            "MetricDataQueries": list(queries),
            "StartTime": datetime.fromtimestamp(start, tz=UTC),
            "EndTime": datetime.fromtimestamp(end, tz=UTC),
            "ScanBy": "TimestampAscending",
        }
        if self._max_datapoints:
            kwargs["PaginationConfig"] = {"PageSize": self._max_datapoints}
        try:
            for page in self._client.get_paginator("get_metric_data").paginate(**kwargs):
                for res in page.get("MetricDataResults", []):
                    ts, vs = merged.setdefault(res["Id"], ([], []))
                    ts.extend(_epoch(t) or 0.0 for t in res.get("Timestamps", []))
                    vs.extend(float(v) for v in res.get("Values", []))
                    status = res.get("StatusCode")
                    if status in ("InternalError", "Forbidden"):
                        messages.append(f"{res['Id']}: {status}")
                for msg in page.get("Messages", []) or []:
                    messages.append(
                        " ".join(f"{msg.get('Code', '')}: {msg.get('Value', '')}".split())
                    )
        except (ClientError, BotoCoreError, SourceError) as exc:
            raise aws_error(exc, what=self.what, service="CloudWatch") from None
        for qid, (ts, vs) in list(merged.items()):
            if any(
                b < a for a, b in itertools.pairwise(ts)
            ):  # pages keep each query's order, but be sure
                order = sorted(range(len(ts)), key=ts.__getitem__)
                merged[qid] = ([ts[i] for i in order], [vs[i] for i in order])
        return merged, messages

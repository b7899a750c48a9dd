"""The tail of each host's log stream of one SageMaker training job, as source objects.

Why: when a job fails, its reason sits in CloudWatch Logs, far from the profile: the NCCL
watchdog's collective timeout, CUDA's out-of-memory error, a NaN loss, the traceback of the
exception that ended the script. SageMaker writes each host's output to the log group
``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-<N>-<epoch>`` (AWS, *Amazon SageMaker AI
Developer Guide*, "Log Amazon SageMaker AI Events with Amazon CloudWatch").

Objects: one per stream, ``cloudwatch-logs/<stream without the job prefix>.json``, listed by
DescribeLogStreams (paginated) and fingerprinted by the stream's last ingestion time and
stored bytes, so ingest's cache reads a finished stream once. Reading one is GetLogEvents
from the end of the stream (``startFromHead=False``), the last :data:`TAIL_EVENTS` events,
stored as a JSON document (:data:`DOC_FORMAT`) that ``analyzer.ingest.job_logs`` parses
into ``job_logs`` rows. Retries: botocore's standard mode (``aws_client``); what is still
refused is a one-line reason and a counted skip, never a failure of the job's other data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from analyzer.errors import SourceError
from analyzer.natural import natural_key
from analyzer.sources.base import SourceObject
from analyzer.sources.s3 import aws_error

__all__ = ["DOC_FORMAT", "LOG_GROUP", "ROLE", "TAIL_EVENTS", "JobLogs"]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
DOC_FORMAT = "stepscope-cloudwatch-logs/1"
#: the key prefix of the log objects in a job's listing
ROLE = "cloudwatch-logs"
#: events read from the end of each stream (one GetLogEvents page holds up to 10,000)
TAIL_EVENTS = 2000
_HOST_RE = re.compile(r"^(?P<host>algo-\d+)(?:-\d+)?$")


class JobLogs:
    """The log streams of one training job (objects as in the module docstring)."""

    def __init__(self, client: Any, *, job_name: str, region: str) -> None:
        self.client, self.job_name, self.region = client, job_name, region
        self.failure: str | None = None
        self._streams: dict[str, str] = {}  # key -> stream name
        self._unavailable: dict[str, str] = {}

    @property
    def location(self) -> str:
        return f"cloudwatch-logs://{self.region}{LOG_GROUP}/{self.job_name}/"

    def list_objects(self) -> Iterator[SourceObject]:
        """One object per stream; when CloudWatch Logs cannot be asked, one placeholder whose
        read fails with the reason (a counted skip), so the rest of the job is still read."""
        self.failure = None
        try:
            streams = self._describe_streams()
        except SourceError as exc:
            self.failure = str(exc)
            key = f"{ROLE}/{self.job_name}-listing.json"
            self._unavailable[key] = self.failure
            yield SourceObject(key=key, size=0, fingerprint="unavailable", location=self.location)
            return
        for s in sorted(streams, key=lambda s: natural_key(str(s.get("logStreamName")))):
            name = str(s["logStreamName"])
            suffix = name.split("/", 1)[1] if "/" in name else name
            key = f"{ROLE}/{suffix}.json"
            self._streams[key] = name
            stamp = s.get("lastIngestionTime") or s.get("lastEventTimestamp") or 0
            yield SourceObject(
                key=key,
                size=int(s.get("storedBytes") or 0),
                fingerprint=f"ingested-{stamp}-{s.get('storedBytes') or 0}",
                location=f"{self.location}{suffix}",
            )

    def _describe_streams(self) -> list[dict[str, Any]]:
        what = f"the CloudWatch log streams of job {self.job_name}"
        out: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job_name}/"
            )
            for page in pages:
                out.extend(page.get("logStreams") or [])
        except ClientError as exc:
            if (exc.response.get("Error") or {}).get("Code") == "ResourceNotFoundException":
                return []  # no log group in this account and region: no logs, not an error
            raise aws_error(exc, what=what, service="CloudWatch Logs") from None
        except BotoCoreError as exc:
            raise aws_error(exc, what=what, service="CloudWatch Logs") from None
        return out

    def handles(self, obj: SourceObject) -> bool:
        return obj.key.startswith(ROLE + "/")

    def read(self, obj: SourceObject) -> bytes:
        """The stream's last :data:`TAIL_EVENTS` events as the JSON document."""
        if obj.key in self._unavailable:
            raise SourceError(self._unavailable[obj.key])
        stream = self._streams.get(obj.key)
        if stream is None:
            raise SourceError(f"not a log stream of job {self.job_name}: {obj.key}")
        what = f"log stream {stream}"
        try:
            resp = self.client.get_log_events(
                logGroupName=LOG_GROUP,
                logStreamName=stream,
                startFromHead=False,
                limit=TAIL_EVENTS,
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, what=what, service="CloudWatch Logs") from None
        events = [
            [int(e.get("timestamp") or 0), str(e.get("message") or "")]
            for e in resp.get("events") or []
        ]
        suffix = stream.split("/", 1)[1] if "/" in stream else stream
        m = _HOST_RE.match(suffix)
        doc = {
            "format": DOC_FORMAT,
            "log_group": LOG_GROUP,
            "job": self.job_name,
            "stream": stream,
            "host": m.group("host") if m else suffix,
            "tail_events": TAIL_EVENTS,
            "events": events,
        }
        return orjson.dumps(doc)

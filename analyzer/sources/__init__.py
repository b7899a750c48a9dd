"""Open the SOURCE argument as a :class:`Source`: local folder, ``s3://`` prefix or job name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from analyzer.errors import SourceError
from analyzer.sources.base import JobMetadata, Source, SourceObject

__all__ = ["JobMetadata", "Source", "SourceObject", "open_source"]

# SageMaker's TrainingJobName pattern (CreateTrainingJob API reference).
JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def open_source(arg: str, *, profile: str | None = None, region: str | None = None) -> Source:
    """Pick the source kind from the argument's shape.

    ``s3://...`` is an S3 prefix; an existing path is a folder; otherwise a string that
    matches SageMaker's job-name pattern is a training job name.
    """
    if arg.startswith("s3://"):
        from analyzer.sources.s3 import S3Source

        return S3Source(arg, profile=profile, region=region)
    if os.path.exists(arg) or arg.startswith((".", "/", "~")) or os.sep in arg:
        from analyzer.sources.local import LocalSource

        return LocalSource(Path(arg))
    if JOB_NAME_RE.match(arg):
        from analyzer.sources.sagemaker_job import SageMakerJobSource

        return SageMakerJobSource(arg, profile=profile, region=region)
    raise SourceError(
        f"cannot read {arg!r}: not an existing folder, an s3:// prefix, or a SageMaker job name"
    )

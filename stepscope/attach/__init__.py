"""Profile SageMaker training jobs: stepscope's collectors by default, Debugger on request.

Three launch paths, the same result:

* SDK v2 (``sagemaker>=2.257,<3``): :func:`stepscope.attach.attach_to_estimator`
  before ``estimator.fit()``.
* SDK v3 (``sagemaker>=3``): :func:`stepscope.attach.train_with_profiling` instead of
  ``model_trainer.train()``.
* boto3 / raw requests: :func:`stepscope.attach.boto3_request.apply_to_request` or
  :func:`stepscope.attach.boto3_request.create_training_job_fields`.

By default each runs the job's command under ``stepscope run`` and ships the collector
with the job (:mod:`stepscope.attach.collectors`); with ``debugger=True`` each attaches the
rule file's SageMaker Debugger ProfilerConfig and rule containers instead
(:mod:`stepscope.attach.common`). The SDK modules import the SDK lazily, so this package
imports without either.
"""

from __future__ import annotations

import importlib
from typing import Any

from stepscope.attach.common import AttachError

#: the public entry points, by the module that holds each (loaded on first use, so
#: ``import stepscope.attach`` loads no SDK and neither SDK module)
_ENTRY_POINTS = {
    "attach_to_estimator": "stepscope.attach.sdk_v2",
    "train_with_profiling": "stepscope.attach.sdk_v3",
    "apply_to_request": "stepscope.attach.boto3_request",
    "create_training_job_fields": "stepscope.attach.boto3_request",
}

__all__ = ["AttachError", *_ENTRY_POINTS]


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stepscope.attach' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

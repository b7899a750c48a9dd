"""Profile SageMaker training jobs: stepscope's collectors by default, Debugger on request.

Three launch paths, the same result:

* SDK v2 (``sagemaker>=2.257,<3``): :func:`rules.attach.sdk_v2.attach_to_estimator`
  before ``estimator.fit()``.
* SDK v3 (``sagemaker>=3``): :func:`rules.attach.sdk_v3.train_with_profiling` instead of
  ``model_trainer.train()``.
* boto3 / raw requests: :func:`rules.attach.boto3_request.apply_to_request` or
  :func:`rules.attach.boto3_request.create_training_job_fields`.

By default each runs the job's command under ``stepscope run`` and ships the collector
with the job (:mod:`rules.attach.collectors`); with ``debugger=True`` each attaches the
rule file's SageMaker Debugger ProfilerConfig and rule containers instead
(:mod:`rules.attach.common`). The SDK modules import the SDK lazily, so this package
imports without either.
"""

from rules.attach.common import AttachError

__all__ = ["AttachError"]

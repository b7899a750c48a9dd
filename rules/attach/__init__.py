"""Attach the rule file's profiler settings and rules to SageMaker training jobs.

One rule file, three launch paths, the same request fields:

* SDK v2 (``sagemaker>=2.257,<3``): :func:`rules.attach.sdk_v2.attach_to_estimator`
  before ``estimator.fit()``.
* SDK v3 (``sagemaker>=3``): :func:`rules.attach.sdk_v3.train_with_profiling` instead of
  ``model_trainer.train()`` (ModelTrainer has no profiler fields).
* boto3 / raw requests: :func:`rules.attach.boto3_request.apply_to_request` or
  :func:`rules.attach.boto3_request.create_training_job_fields`.

The SDK modules import the SDK lazily, so this package imports without either.
"""

from rules.attach.common import AttachError

__all__ = ["AttachError"]

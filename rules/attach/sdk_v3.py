"""SageMaker Python SDK v3 (``sagemaker>=3.3,<4``): launch a ModelTrainer job with profiling.

Why a launch function and not an "attach": ``ModelTrainer`` has no debugger or profiler
fields at all (checked in sagemaker 3.27.0), while the resource API it launches through,
``sagemaker.core.resources.TrainingJob.create``, takes ``profiler_config``,
``profiler_rule_configurations``, ``debug_hook_config`` and ``tensor_board_output_config``.
So :func:`train_with_profiling` does what ``ModelTrainer.train()`` does for a SageMaker
training job, with those four fields added::

    from sagemaker.train import ModelTrainer
    from rules.attach.sdk_v3 import train_with_profiling

    trainer = ModelTrainer(training_image=..., source_code=..., compute=..., role=...)
    job = train_with_profiling(trainer, rules_file="rules.toml", wait=False)

What it relies on: ``ModelTrainer._create_training_job_args(input_data_config=...)``,
the method ``train()`` itself uses to build the ``TrainingJob.create`` keyword arguments
(the only non-public piece; present since sagemaker-train 1.3.0, i.e. sagemaker 3.3, and
unchanged through 1.27.0, the version tested), and the public ``TrainingJob.create``.
Both are checked before anything is uploaded; when the installed SDK differs, the error
says what to do instead. Local-container mode and pipeline sessions are not supported
(SageMaker Debugger only runs on SageMaker training jobs).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any

from rules.attach.common import (
    AttachError,
    build_fields,
    check_instance_type,
    resolve_ruleset,
)
from rules.ruleset import RuleSet

__all__ = ["SUPPORTED", "TESTED", "is_v2_object", "profiling_arguments", "train_with_profiling"]

log = logging.getLogger(__name__)

SUPPORTED = "sagemaker>=3.3,<4 (sagemaker-train>=1.3,<2)"
TESTED = "sagemaker 3.27.0 (sagemaker-train 1.27.0, sagemaker-core 2.27.0)"
_INSTALL_HINT = "pip install 'sagemaker>=3.3,<4'"
_CREATE_FIELDS = (
    "profiler_config",
    "profiler_rule_configurations",
    "debug_hook_config",
    "tensor_board_output_config",
)


def is_v2_object(obj: Any) -> bool:
    """A SageMaker SDK v2 estimator (``sagemaker.estimator.EstimatorBase`` or a subclass),
    recognised by class without importing the SDK."""
    return any(
        cls.__name__ == "EstimatorBase" and cls.__module__ == "sagemaker.estimator"
        for cls in type(obj).__mro__
    )


def _sdk_v3() -> tuple[Any, Any, Any]:
    """(ModelTrainer class, Mode enum, TrainingJob class) of an installed, supported SDK v3."""
    try:
        train_version = importlib.metadata.version("sagemaker-train")
    except importlib.metadata.PackageNotFoundError:
        try:
            version = importlib.metadata.version("sagemaker")
        except importlib.metadata.PackageNotFoundError:
            raise AttachError("the SageMaker Python SDK is not installed", hint=_INSTALL_HINT) from None
        raise AttachError(
            f"train_with_profiling() needs SageMaker SDK v3, but sagemaker {version} is installed",
            hint="with SDK v2 use rules.attach.sdk_v2.attach_to_estimator(estimator) before fit()",
        ) from None
    if train_version.split(".", 1)[0] != "1":
        raise AttachError(
            f"sagemaker-train {train_version} is newer than stepscope supports ({SUPPORTED}; tested {TESTED})",
            hint="pin 'sagemaker<4', or build the request with rules.attach.boto3_request.apply_to_request()",
        )
    from sagemaker.core.resources import TrainingJob
    from sagemaker.train.model_trainer import Mode, ModelTrainer

    build = getattr(ModelTrainer, "_create_training_job_args", None)
    create = getattr(TrainingJob, "create", None)
    if (
        build is None
        or "input_data_config" not in inspect.signature(build).parameters
        or create is None
        or not set(_CREATE_FIELDS) | {"session"} <= set(inspect.signature(create).parameters)
    ):
        raise AttachError(
            f"sagemaker-train {train_version} does not build training jobs the way stepscope expects "
            f"(supported: {SUPPORTED}; tested {TESTED})",
            hint="install 'sagemaker>=3.3,<4', or build the request with rules.attach.boto3_request.apply_to_request()",
        )
    return ModelTrainer, Mode, TrainingJob


def _shapes(fields: dict[str, Any]) -> dict[str, Any]:
    """PascalCase request fields -> ``TrainingJob.create`` keyword arguments (core shapes)."""
    from sagemaker.core import shapes

    out: dict[str, Any] = {}
    if "ProfilerConfig" in fields:
        pc = fields["ProfilerConfig"]
        kwargs: dict[str, Any] = {"disable_profiler": pc["DisableProfiler"]}
        if "S3OutputPath" in pc:
            kwargs["s3_output_path"] = pc["S3OutputPath"]
        if "ProfilingIntervalInMilliseconds" in pc:
            kwargs["profiling_interval_in_milliseconds"] = pc["ProfilingIntervalInMilliseconds"]
        out["profiler_config"] = shapes.ProfilerConfig(**kwargs)
    if "ProfilerRuleConfigurations" in fields:
        out["profiler_rule_configurations"] = [
            shapes.ProfilerRuleConfiguration(
                rule_configuration_name=r["RuleConfigurationName"],
                rule_evaluator_image=r["RuleEvaluatorImage"],
                rule_parameters=dict(r["RuleParameters"]),
            )
            for r in fields["ProfilerRuleConfigurations"]
        ]
    if "DebugHookConfig" in fields:
        hook = fields["DebugHookConfig"]
        out["debug_hook_config"] = shapes.DebugHookConfig(
            s3_output_path=hook["S3OutputPath"],
            collection_configurations=[
                shapes.CollectionConfiguration(collection_name=c["CollectionName"])
                for c in hook["CollectionConfigurations"]
            ],
        )
    if "TensorBoardOutputConfig" in fields:
        tb = fields["TensorBoardOutputConfig"]
        out["tensor_board_output_config"] = shapes.TensorBoardOutputConfig(
            s3_output_path=tb["S3OutputPath"], local_path=tb["LocalPath"]
        )
    return out


def _check_trainer(model_trainer: Any) -> tuple[Any, Any]:
    """The trainer is a v3 ModelTrainer that launches a SageMaker training job."""
    if is_v2_object(model_trainer):
        raise AttachError(
            f"train_with_profiling() takes a SageMaker SDK v3 ModelTrainer, got a v2 estimator "
            f"({type(model_trainer).__module__}.{type(model_trainer).__name__})",
            hint="use rules.attach.sdk_v2.attach_to_estimator(estimator), then estimator.fit()",
        )
    model_trainer_cls, mode, training_job = _sdk_v3()
    if not isinstance(model_trainer, model_trainer_cls):
        raise AttachError(
            f"train_with_profiling() takes a sagemaker.train.ModelTrainer, got {type(model_trainer).__name__}",
            hint="for a raw CreateTrainingJob request use rules.attach.boto3_request.apply_to_request()",
        )
    if model_trainer.training_mode != mode.SAGEMAKER_TRAINING_JOB:
        raise AttachError(
            "SageMaker Debugger profiling only runs on SageMaker training jobs, not in local-container mode",
            hint="use training_mode=Mode.SAGEMAKER_TRAINING_JOB, or plain model_trainer.train() locally",
        )
    session = model_trainer.sagemaker_session
    if type(session).__name__ == "PipelineSession":
        raise AttachError(
            "train_with_profiling() launches a job now; it cannot run inside a pipeline definition",
            hint="for pipelines, add the fields from rules.attach.boto3_request.create_training_job_fields() to the step's request",
        )
    return session, training_job


def profiling_arguments(
    model_trainer: Any,
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    input_data_config: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The ``TrainingJob.create`` keyword arguments ``model_trainer.train()`` would use,
    plus the rule set's profiling fields. Uploads source code and data like train() does."""
    rs = resolve_ruleset(ruleset, rules_file)
    session, _ = _check_trainer(model_trainer)
    request: dict[str, Any] = model_trainer._create_training_job_args(
        input_data_config=list(input_data_config) if input_data_config is not None else None
    )
    resource = request.get("resource_config")
    check_instance_type(getattr(resource, "instance_type", None), rs)
    output = getattr(request.get("output_data_config"), "s3_output_path", None)
    fields = _shapes(build_fields(rs, getattr(session, "boto_region_name", None), output))
    for name, value in fields.items():
        if name == "tensor_board_output_config" and request.get(name) is not None:
            log.info("keeping the ModelTrainer's own TensorBoardOutputConfig")
            continue
        if request.get(name) is not None:
            raise AttachError(
                f"this ModelTrainer already sets {name}; stepscope would overwrite it",
                hint=f"drop it from the trainer (supported: {SUPPORTED})",
            )
        request[name] = value
    return request


def train_with_profiling(
    model_trainer: Any,
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    input_data_config: Sequence[Any] | None = None,
    wait: bool = True,
    logs: bool = True,
) -> Any:
    """``model_trainer.train(input_data_config, wait, logs)`` with the rule set's profiler
    config, rules, hook and TensorBoard config on the job; returns the
    ``sagemaker.core.resources.TrainingJob``."""
    _, training_job = _check_trainer(model_trainer)
    request = profiling_arguments(
        model_trainer, ruleset, rules_file=rules_file, input_data_config=input_data_config
    )
    log.info("Training Job Name: %s", request.get("training_job_name"))
    job = training_job.create(session=model_trainer.sagemaker_session.boto_session, **request)
    if hasattr(model_trainer, "_latest_training_job"):
        model_trainer._latest_training_job = job  # as train() does, for the trainer's helpers
    if wait:
        job.wait(logs=logs)
    return job

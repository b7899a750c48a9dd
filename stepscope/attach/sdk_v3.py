"""SageMaker Python SDK v3 (``sagemaker>=3.3,<4``): launch a ModelTrainer job with profiling.

Why a launch function and not an "attach": ``ModelTrainer`` has no debugger or profiler
fields at all (checked in sagemaker 3.27.0), while the resource API it launches through,
``sagemaker.core.resources.TrainingJob.create``, takes ``profiler_config``,
``profiler_rule_configurations``, ``debug_hook_config`` and ``tensor_board_output_config``.
So :func:`train_with_profiling` does what ``ModelTrainer.train()`` does for a SageMaker
training job, with those four fields added::

    from sagemaker.train import ModelTrainer
    from stepscope.attach.sdk_v3 import train_with_profiling

    trainer = ModelTrainer(training_image=..., source_code=..., compute=..., role=...)
    job = train_with_profiling(trainer, wait=False)                  # stepscope's collectors
    job = train_with_profiling(trainer, debugger=True, wait=False)   # SageMaker Debugger

Collectors mode (default): the job runs with a copy of ``SourceCode`` (the trainer's own is
put back afterwards): ``source_dir`` staged in a temporary folder with the collector wheel
and a ``requirements`` line installing it; ``entry_script`` replaced by
``stepscope_entry.py``, which runs it under ``python -m stepscope.collectors.launcher``
(so the torchrun and MPI drivers run it as before), or ``command`` prefixed with the
launcher; plus a ``TensorBoardOutputConfig`` (a trainer's own is kept), so the collectors'
output reaches S3 during the job. ``debugger=True`` adds Debugger's four fields instead.

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
import shlex
from collections.abc import Sequence
from typing import Any

from rules.ruleset import RuleSet
from stepscope.attach.collectors import (
    REQUIREMENTS,
    check_single_command,
    is_launcher_command,
    launcher_command,
    stage_source,
    tensorboard_fields,
)
from stepscope.attach.common import (
    TENSORBOARD_LOCAL_PATH,
    AttachError,
    build_fields,
    check_instance_type,
    check_ruleset,
    resolve_ruleset,
)

__all__ = ["SUPPORTED", "TESTED", "is_v2_object", "profiling_arguments", "train_with_profiling"]

log = logging.getLogger(__name__)

SUPPORTED = "sagemaker>=3.3,<4 (sagemaker-train>=1.3,<2)"
TESTED = "sagemaker 3.27.0 (sagemaker-train 1.27.0, sagemaker-core 2.27.0)"
_INSTALL_HINT = "pip install 'sagemaker>=3.3,<4'"
_CREATE_FIELDS = (
    "profiler_config",
    "profiler_rule_configurations",
    "debug_rule_configurations",
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
            raise AttachError(
                "the SageMaker Python SDK is not installed", hint=_INSTALL_HINT
            ) from None
        raise AttachError(
            f"train_with_profiling() needs SageMaker SDK v3, but sagemaker {version} is installed",
            hint=(
                "with SDK v2 use stepscope.attach.sdk_v2.attach_to_estimator(estimator) "
                "before fit()"
            ),
        ) from None
    if train_version.split(".", 1)[0] != "1":
        raise AttachError(
            f"sagemaker-train {train_version} is newer than stepscope supports "
            f"({SUPPORTED}; tested {TESTED})",
            hint=(
                "pin 'sagemaker<4', or build the request with "
                "stepscope.attach.boto3_request.apply_to_request()"
            ),
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
            f"sagemaker-train {train_version} does not build training jobs "
            "the way stepscope expects "
            f"(supported: {SUPPORTED}; tested {TESTED})",
            hint=(
                "install 'sagemaker>=3.3,<4', or build the request with "
                "stepscope.attach.boto3_request.apply_to_request()"
            ),
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
    if "DebugRuleConfigurations" in fields:
        out["debug_rule_configurations"] = [
            shapes.DebugRuleConfiguration(
                rule_configuration_name=r["RuleConfigurationName"],
                rule_evaluator_image=r["RuleEvaluatorImage"],
                rule_parameters=dict(r["RuleParameters"]),
            )
            for r in fields["DebugRuleConfigurations"]
        ]
    if "DebugHookConfig" in fields:
        hook = fields["DebugHookConfig"]
        out["debug_hook_config"] = shapes.DebugHookConfig(
            s3_output_path=hook["S3OutputPath"],
            collection_configurations=[
                shapes.CollectionConfiguration(
                    collection_name=c["CollectionName"],
                    **(
                        {"collection_parameters": dict(c["CollectionParameters"])}
                        if "CollectionParameters" in c
                        else {}
                    ),
                )
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
            hint="use stepscope.attach.sdk_v2.attach_to_estimator(estimator), then estimator.fit()",
        )
    model_trainer_cls, mode, training_job = _sdk_v3()
    if not isinstance(model_trainer, model_trainer_cls):
        raise AttachError(
            "train_with_profiling() takes a sagemaker.train.ModelTrainer, "
            f"got {type(model_trainer).__name__}",
            hint=(
                "for a raw CreateTrainingJob request use "
                "stepscope.attach.boto3_request.apply_to_request()"
            ),
        )
    if model_trainer.training_mode != mode.SAGEMAKER_TRAINING_JOB:
        raise AttachError(
            "train_with_profiling() launches SageMaker training jobs, not in local-container mode",
            hint=(
                "use training_mode=Mode.SAGEMAKER_TRAINING_JOB; "
                "locally run the command under `stepscope run`"
            ),
        )
    session = model_trainer.sagemaker_session
    if type(session).__name__ == "PipelineSession":
        raise AttachError(
            "train_with_profiling() launches a job now; it cannot run inside a pipeline definition",
            hint=(
                "for pipelines, add the fields from "
                "stepscope.attach.boto3_request.create_training_job_fields() to the step's request"
            ),
        )
    return session, training_job


def profiling_arguments(
    model_trainer: Any,
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    input_data_config: Sequence[Any] | None = None,
    debugger: bool = False,
) -> dict[str, Any]:
    """The ``TrainingJob.create`` keyword arguments ``model_trainer.train()`` would use,
    with the job run under stepscope's collectors (or, ``debugger=True``, with Debugger's
    profiling fields). Uploads source code and data like train() does."""
    rs = resolve_ruleset(ruleset, rules_file)
    session, _ = _check_trainer(model_trainer)
    if not debugger:
        return _collector_arguments(model_trainer, rs, input_data_config)
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


def _collector_source(model_trainer: Any, rs: RuleSet) -> Any:
    """A copy of the trainer's SourceCode that runs under the launcher and installs the
    collector (its source_dir staged, the user's folder untouched)."""
    source = model_trainer.source_code
    if source is None or not (source.command or source.entry_script):
        raise AttachError(
            "this ModelTrainer has no SourceCode command or entry_script, so the command to run "
            "under stepscope run is unknown (the image's own ENTRYPOINT)",
            hint=(
                "give it source_code=SourceCode(command='python train.py') or entry_script, "
                "or attach with debugger=True"
            ),
        )
    source_dir = source.source_dir
    if source_dir is not None and (
        not isinstance(source_dir, str)
        or source_dir.startswith("s3://")
        or source_dir.endswith(".tar.gz")
    ):
        raise AttachError(
            f"SourceCode.source_dir {source_dir!r} is not a local folder, "
            "so the collector cannot be added to it",
            hint="pass a local source_dir, or attach with debugger=True",
        )
    tb = getattr(model_trainer, "_tensorboard_output_config", None)
    out_dir = getattr(tb, "local_path", None) or TENSORBOARD_LOCAL_PATH
    interval = rs.profiler.system_monitor_interval_millis
    requirements = source.requirements or REQUIREMENTS
    if not isinstance(requirements, str) or requirements == "auto":
        raise AttachError(
            f"SourceCode.requirements {requirements!r} is not a file stepscope can add to",
            hint="name a requirements file in source_dir",
        )
    if source.command:
        check_single_command(str(source.command), "SourceCode.command")
        command = str(source.command)
        if not is_launcher_command(command.split()):
            command = " ".join([*map(shlex.quote, launcher_command(out_dir, interval)), command])
        staged = stage_source(
            source_dir, None, out_dir=out_dir, interval_ms=interval, requirements=requirements
        )
        update: dict[str, Any] = {"command": command}
    else:
        staged = stage_source(
            source_dir,
            str(source.entry_script),
            out_dir=out_dir,
            interval_ms=interval,
            requirements=requirements,
        )
        update = {"entry_script": staged.entry_point}
    update.update(source_dir=str(staged.source_dir), requirements=staged.requirements)
    log.info("stepscope: staged the source code with the collector in %s", staged.source_dir)
    return source.model_copy(update=update)


def _collector_arguments(
    model_trainer: Any, rs: RuleSet, input_data_config: Sequence[Any] | None
) -> dict[str, Any]:
    from sagemaker.core import shapes

    check_ruleset(rs)
    saved = model_trainer.source_code
    model_trainer.source_code = _collector_source(model_trainer, rs)
    try:
        request: dict[str, Any] = model_trainer._create_training_job_args(
            input_data_config=list(input_data_config) if input_data_config is not None else None
        )
    finally:
        model_trainer.source_code = saved
    if request.get("tensor_board_output_config") is None:
        output = getattr(request.get("output_data_config"), "s3_output_path", None)
        tb = tensorboard_fields(rs, output)
        request["tensor_board_output_config"] = shapes.TensorBoardOutputConfig(
            s3_output_path=tb["S3OutputPath"], local_path=tb["LocalPath"]
        )
    else:
        log.info("keeping the ModelTrainer's own TensorBoardOutputConfig")
    return request


def train_with_profiling(
    model_trainer: Any,
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    input_data_config: Sequence[Any] | None = None,
    wait: bool = True,
    logs: bool = True,
    debugger: bool = False,
) -> Any:
    """``model_trainer.train(input_data_config, wait, logs)`` with the job run under
    stepscope's collectors (``debugger=True``: with the rule set's Debugger profiler config,
    rules, hook and TensorBoard config); returns the ``sagemaker.core.resources.TrainingJob``."""
    _, training_job = _check_trainer(model_trainer)
    request = profiling_arguments(
        model_trainer,
        ruleset,
        rules_file=rules_file,
        input_data_config=input_data_config,
        debugger=debugger,
    )
    log.info("Training Job Name: %s", request.get("training_job_name"))
    job = training_job.create(session=model_trainer.sagemaker_session.boto_session, **request)
    if hasattr(model_trainer, "_latest_training_job"):
        model_trainer._latest_training_job = job  # as train() does, for the trainer's helpers
    if wait:
        job.wait(logs=logs)
    return job

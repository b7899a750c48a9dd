"""Profiling for hand-built CreateTrainingJob requests (boto3, CloudFormation, Step Functions).

Why: not every job is launched through the SageMaker Python SDK, and the SDK-independent
path must not need it installed::

    from stepscope.attach.boto3_request import apply_to_request

    request = apply_to_request(request)   # ContainerEntrypoint runs under stepscope run
    boto3.client("sagemaker").create_training_job(**request)

By default (collectors mode) the request's ``AlgorithmSpecification.ContainerEntrypoint``
becomes ``python -m stepscope.collectors.launcher ... -- <the entrypoint>`` and a
``TensorBoardOutputConfig`` uploads what the collectors write; the image must contain the
collector (``stepscope.attach.collectors.image_install_commands``). With ``debugger=True`` it
attaches SageMaker Debugger's ProfilerConfig and rule containers instead; the rule
evaluator image comes from stepscope's own per-region table (the SDK's ``debugger.json``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rules.ruleset import RuleSet
from stepscope.attach.collectors import (
    is_launcher_command,
    launcher_command,
    out_dir_of,
    tensorboard_fields,
)
from stepscope.attach.common import (
    PROFILER_FIELDS,
    AttachError,
    build_fields,
    check_instance_type,
    check_ruleset,
    resolve_ruleset,
)

__all__ = ["apply_to_request", "collector_fields", "create_training_job_fields", "default_region"]

#: Fields a user may already have set that stepscope leaves alone when present.
_KEEP_USER = ("DebugHookConfig", "TensorBoardOutputConfig")


def create_training_job_fields(
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    region: str | None = None,
    s3_output_path: str | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    debugger: bool = False,
    entrypoint: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob fields to merge into a request.

    Collectors mode (default): ``AlgorithmSpecification.ContainerEntrypoint`` running
    ``entrypoint`` (the job's command, required) under the launcher, and
    ``TensorBoardOutputConfig``. ``debugger=True``: ``ProfilerConfig``,
    ``ProfilerRuleConfigurations``, and ``DebugHookConfig`` / ``TensorBoardOutputConfig``
    when the rule file turns them on; ``region`` picks the rule evaluator image."""
    rs = resolve_ruleset(ruleset, rules_file)
    if debugger:
        return build_fields(rs, region or default_region(), s3_output_path)
    if not entrypoint:
        raise AttachError(
            "collectors mode needs the job's command to run it under stepscope run",
            hint=(
                "pass entrypoint=['python', 'train.py'] (CLI: --entrypoint), "
                "or debugger=True (--debugger)"
            ),
        )
    return collector_fields(rs, s3_output_path, entrypoint)


def collector_fields(
    ruleset: RuleSet,
    s3_output_path: str | None,
    entrypoint: Sequence[str],
    tensorboard: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """ContainerEntrypoint under the launcher and TensorBoardOutputConfig (``tensorboard``:
    the request's own, kept; the collectors write to its LocalPath)."""
    check_ruleset(ruleset)
    tb = dict(tensorboard) if tensorboard else tensorboard_fields(ruleset, s3_output_path)
    argv = [str(a) for a in entrypoint]
    if not is_launcher_command(argv):
        argv = [
            *launcher_command(out_dir_of(tb), ruleset.profiler.system_monitor_interval_millis),
            *argv,
        ]
    return {"AlgorithmSpecification": {"ContainerEntrypoint": argv}, "TensorBoardOutputConfig": tb}


def apply_to_request(
    request: Mapping[str, Any],
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    region: str | None = None,
    debugger: bool = False,
    entrypoint: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A copy of ``request`` that profiles the job.

    Collectors mode (default): ``AlgorithmSpecification.ContainerEntrypoint`` (or
    ``entrypoint``, when the request has none: the image's own ENTRYPOINT cannot be read
    from the request) runs under ``python -m stepscope.collectors.launcher``, and a
    ``TensorBoardOutputConfig`` under ``OutputDataConfig.S3OutputPath`` uploads its output
    (one the request has is kept, and the collectors write to its LocalPath). The image must
    contain the collector (docs/collect.md). Debugger fields already in the request stay.

    ``debugger=True``: SageMaker Debugger's fields instead. The profiler output goes under
    ``OutputDataConfig.S3OutputPath`` unless the rule file sets ``[profiler]
    s3_output_path``. stepscope owns ``ProfilerConfig`` and ``ProfilerRuleConfigurations``
    (replaced); a ``DebugHookConfig`` or ``TensorBoardOutputConfig`` already there is kept,
    and so are the request's own ``DebugRuleConfigurations`` beside the training rules
    stepscope adds (``debugger_hook = true``).
    """
    if not isinstance(request, Mapping):
        raise AttachError(
            "apply_to_request() takes the CreateTrainingJob request as a dict, "
            f"got {type(request).__name__}",
            hint=(
                "for SDK objects use stepscope.attach.sdk_v2.attach_to_estimator "
                "or stepscope.attach.sdk_v3.train_with_profiling"
            ),
        )
    rs = resolve_ruleset(ruleset, rules_file)
    output = (request.get("OutputDataConfig") or {}).get("S3OutputPath")
    if not debugger:
        return _with_collectors(request, rs, output, entrypoint)
    check_instance_type((request.get("ResourceConfig") or {}).get("InstanceType"), rs)
    fields = build_fields(rs, region or default_region(), output)
    out = copy.deepcopy(dict(request))
    for name in PROFILER_FIELDS:
        if name == "DebugRuleConfigurations":
            # the request's own Debugger rules stay; a same-named one is replaced by stepscope's
            ours = fields.get(name, [])
            names = {r["RuleConfigurationName"] for r in ours}
            merged = [
                r for r in out.get(name) or [] if r.get("RuleConfigurationName") not in names
            ] + ours
            if merged:
                out[name] = merged
            continue
        if name in _KEEP_USER and out.get(name):
            continue
        if name in fields:
            out[name] = fields[name]
        elif name not in _KEEP_USER:
            out.pop(name, None)
    return out


def _with_collectors(
    request: Mapping[str, Any], rs: RuleSet, output: str | None, entrypoint: Sequence[str] | None
) -> dict[str, Any]:
    spec = request.get("AlgorithmSpecification") or {}
    own = spec.get("ContainerEntrypoint")
    if own and entrypoint:
        raise AttachError(
            "the request has a ContainerEntrypoint and entrypoint was given too",
            hint="pass one of them",
        )
    command = own or entrypoint
    if not command:
        raise AttachError(
            "the request has no AlgorithmSpecification.ContainerEntrypoint, so the command to run "
            "under stepscope run is unknown (the image's own ENTRYPOINT)",
            hint=(
                "pass entrypoint=[...] (CLI: --entrypoint 'python train.py'), "
                "or debugger=True (--debugger)"
            ),
        )
    if isinstance(command, str) or not all(isinstance(a, str) for a in command):
        raise AttachError(
            "ContainerEntrypoint must be a list of strings", hint='e.g. ["python", "train.py"]'
        )
    fields = collector_fields(rs, output, command, request.get("TensorBoardOutputConfig"))
    out = copy.deepcopy(dict(request))
    out["AlgorithmSpecification"] = {
        **copy.deepcopy(dict(spec)),
        **fields["AlgorithmSpecification"],
    }
    out["TensorBoardOutputConfig"] = fields["TensorBoardOutputConfig"]
    return out


def default_region() -> str | None:
    """The region boto3 would use (env, profile), so the image matches the client's."""
    try:
        import boto3

        return boto3.session.Session().region_name
    except Exception:  # a broken profile must not hide the clearer "no region" error
        return None

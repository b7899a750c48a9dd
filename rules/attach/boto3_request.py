"""Profiling for hand-built CreateTrainingJob requests (boto3, CloudFormation, Step Functions).

Why: not every job is launched through the SageMaker Python SDK, and the SDK-independent
path must not need it installed. The rule evaluator image comes from stepscope's own
per-region table (the SDK's ``debugger.json``), not from the SDK::

    from rules.attach.boto3_request import apply_to_request

    request = apply_to_request(request, rules_file="rules.toml", region="us-west-2")
    boto3.client("sagemaker").create_training_job(**request)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from rules.attach.common import (
    PROFILER_FIELDS,
    AttachError,
    build_fields,
    check_instance_type,
    resolve_ruleset,
)
from rules.ruleset import RuleSet

__all__ = ["apply_to_request", "create_training_job_fields", "default_region"]

#: Fields a user may already have set that stepscope leaves alone when present.
_KEEP_USER = ("DebugHookConfig", "TensorBoardOutputConfig")


def create_training_job_fields(
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    region: str | None = None,
    s3_output_path: str | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob fields for the rule set (defaults when none is given):
    ``ProfilerConfig``, ``ProfilerRuleConfigurations``, and ``DebugHookConfig`` /
    ``TensorBoardOutputConfig`` when the rule file turns them on. Merge them into the
    request; ``region`` picks the rule evaluator image."""
    rs = resolve_ruleset(ruleset, rules_file)
    return build_fields(rs, region or default_region(), s3_output_path)


def apply_to_request(
    request: Mapping[str, Any],
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    *,
    rules_file: str | os.PathLike[str] | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    """A copy of ``request`` with the rule set's profiling fields.

    The profiler output goes under the request's ``OutputDataConfig.S3OutputPath`` unless
    the rule file sets ``[profiler] s3_output_path``. stepscope owns ``ProfilerConfig`` and
    ``ProfilerRuleConfigurations`` (replaced); a ``DebugHookConfig`` or
    ``TensorBoardOutputConfig`` already in the request is kept.
    """
    if not isinstance(request, Mapping):
        raise AttachError(
            f"apply_to_request() takes the CreateTrainingJob request as a dict, got {type(request).__name__}",
            hint="for SDK objects use rules.attach.sdk_v2.attach_to_estimator or rules.attach.sdk_v3.train_with_profiling",
        )
    rs = resolve_ruleset(ruleset, rules_file)
    check_instance_type((request.get("ResourceConfig") or {}).get("InstanceType"), rs)
    output = (request.get("OutputDataConfig") or {}).get("S3OutputPath")
    fields = build_fields(rs, region or default_region(), output)
    out = copy.deepcopy(dict(request))
    for name in PROFILER_FIELDS:
        if name in _KEEP_USER and out.get(name):
            continue
        if name in fields:
            out[name] = fields[name]
        elif name not in _KEEP_USER:
            out.pop(name, None)
    return out


def default_region() -> str | None:
    """The region boto3 would use (env, profile), so the image matches the client's."""
    try:
        import boto3

        return boto3.session.Session().region_name
    except Exception:  # a broken profile must not hide the clearer "no region" error
        return None

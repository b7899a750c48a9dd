"""SDK-neutral CreateTrainingJob fields built from the rule file.

Why one builder: SDK v2, SDK v3 and hand-written boto3 requests must put the same
ProfilerConfig, the same rules with the same ``RuleParameters`` and the same hook and
TensorBoard settings on a job, so SageMaker's rule containers and ``stepscope report`` judge
it by the same thresholds whichever way it was launched. The SDK modules convert what is
built here; nothing here imports the SageMaker SDK.

Field shapes follow the SDK's own output (``sagemaker.debugger`` v2): ``RuleParameters``
are strings, each rule names itself in ``rule_to_invoke``, and a parameter left unset
(``None``, e.g. StepOutlier's ``mode``) is left out rather than sent as ``"None"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from analyzer.errors import StepscopeError
from rules import params as p
from rules.builtin.profiler_report import ProfilerReport
from rules.builtin.saturated_activation import SATURATED_INPUTS_COLLECTION, SATURATED_INPUTS_REGEX
from rules.ruleset import CATALOG, RuleSet, load_ruleset
from stepscope.collectors.profiling import SAGEMAKER_TENSORBOARD_DIR

__all__ = [
    "PROFILER_FIELDS",
    "PROFILING_INTERVALS_MS",
    "RULE_EVALUATOR_ACCOUNTS",
    "TENSORBOARD_LOCAL_PATH",
    "AttachError",
    "build_fields",
    "check_instance_type",
    "check_ruleset",
    "debug_hook_config",
    "debug_rule_configurations",
    "profiler_config",
    "profiler_rule_configurations",
    "resolve_ruleset",
    "rule_arguments",
    "rule_evaluator_image",
    "tensorboard_output_config",
    "training_hook_collections",
    "training_rule_arguments",
]


class AttachError(StepscopeError):
    """Profiling cannot be attached as asked (wrong object, SDK, region or rule set)."""


#: Account of the ``sagemaker-debugger-rules`` image per region: the SageMaker Python
#: SDK's ``image_uri_config/debugger.json`` (identical in sagemaker 2.257.7 and in
#: sagemaker-core 2.27.0); tests check it against whichever SDK is installed.
RULE_EVALUATOR_ACCOUNTS: dict[str, str] = {
    "af-south-1": "314341159256",
    "ap-east-1": "199566480951",
    "ap-northeast-1": "430734990657",
    "ap-northeast-2": "578805364391",
    "ap-northeast-3": "479947661362",
    "ap-south-1": "904829902805",
    "ap-southeast-1": "972752614525",
    "ap-southeast-2": "184798709955",
    "ca-central-1": "519511493484",
    "cn-north-1": "618459771430",
    "cn-northwest-1": "658757709296",
    "eu-central-1": "482524230118",
    "eu-north-1": "314864569078",
    "eu-south-1": "563282790590",
    "eu-west-1": "929884845733",
    "eu-west-2": "250201462417",
    "eu-west-3": "447278800020",
    "me-south-1": "986000313247",
    "sa-east-1": "818342061345",
    "us-east-1": "503895931360",
    "us-east-2": "915447279597",
    "us-gov-west-1": "515509971035",
    "us-west-1": "685455198987",
    "us-west-2": "895741380848",
}
RULE_EVALUATOR_REPOSITORY = "sagemaker-debugger-rules"
RULE_EVALUATOR_TAG = "latest"

#: Where the training script's torch.profiler traces go (stepscope.collectors.profiling writes
#: there).
TENSORBOARD_LOCAL_PATH = str(SAGEMAKER_TENSORBOARD_DIR)

#: The sampling periods SageMaker accepts for ProfilingIntervalInMilliseconds.
PROFILING_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)

#: CreateTrainingJob fields stepscope sets.
PROFILER_FIELDS = (
    "ProfilerConfig",
    "ProfilerRuleConfigurations",
    "DebugRuleConfigurations",
    "DebugHookConfig",
    "TensorBoardOutputConfig",
)

# Service limits (botocore's model: ProfilerRuleConfigurations max 20, RuleParameters
# max 100 entries, CollectionConfigurations max 20); botocore's client-side validation
# does not check maxima, so a request over them would only fail at the service.
_MAX_RULES = 20
_MAX_RULE_PARAMETERS = 100
_MAX_COLLECTIONS = 20
#: CollectionParameters of the Debugger collections that are regexes rather than built-ins
#: (smdebug_rulesconfig's ``collections.json``; SaturatedActivation's tanh/sigmoid inputs,
#: for which it has none, as AWS's page attaches them); the hook's save_interval default
#: (500) stays.
DEBUGGER_COLLECTION_PARAMETERS: dict[str, dict[str, str]] = {
    "relu_output": {"include_regex": ".*relu_output"},
    "relu_input": {"include_regex": ".*relu_input"},
    SATURATED_INPUTS_COLLECTION: {"include_regex": SATURATED_INPUTS_REGEX},
}
_S3_PATTERN = re.compile(r"^s3://[^/]+(/.*)?$")
_TRAINIUM = re.compile(r"^ml[._]trn")


def resolve_ruleset(
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    rules_file: str | os.PathLike[str] | None = None,
) -> RuleSet:
    """The rule set to attach: the one given, else the file, else stepscope's defaults."""
    if ruleset is not None and rules_file is not None:
        raise AttachError("pass either a RuleSet or rules_file, not both")
    if isinstance(ruleset, RuleSet):
        return ruleset
    if isinstance(ruleset, str | os.PathLike):
        return load_ruleset(Path(ruleset))
    if ruleset is not None:
        raise AttachError(
            "ruleset must be a rules.ruleset.RuleSet or a rule file path, "
            f"got {type(ruleset).__name__}",
            hint="load one with rules.ruleset.load_ruleset(path)",
        )
    return load_ruleset(Path(rules_file) if rules_file is not None else None)


def check_ruleset(ruleset: RuleSet) -> None:
    """Fail early, in one line, on what SageMaker would reject later (or silently ignore)."""
    for name, values in ruleset.rules.items():
        entry = CATALOG.get(name)
        if entry is None:
            raise AttachError(
                f"unknown rule {name!r} in the rule set",
                hint=f"known rules: {', '.join(CATALOG)}",
            )
        if not isinstance(values, entry.params_model):
            raise AttachError(
                f"rule {name!r} has parameters of type {type(values).__name__}, "
                f"expected {entry.params_model.__name__}",
                hint="build rule sets with rules.ruleset.load_ruleset()",
            )
    settings = ruleset.profiler
    if settings.system_monitor_interval_millis not in PROFILING_INTERVALS_MS:
        raise AttachError(
            f"{ruleset.source}: [profiler] system_monitor_interval_millis = "
            f"{settings.system_monitor_interval_millis} is not accepted by SageMaker",
            hint=f"use one of {', '.join(map(str, PROFILING_INTERVALS_MS))}",
        )
    if settings.s3_output_path is not None:
        _check_s3(settings.s3_output_path, f"{ruleset.source}: [profiler] s3_output_path")
    if settings.debugger_hook:
        if not settings.hook_collections or len(settings.hook_collections) > _MAX_COLLECTIONS:
            raise AttachError(
                f"{ruleset.source}: [profiler] hook_collections needs 1 to "
                f"{_MAX_COLLECTIONS} names",
                hint='e.g. hook_collections = ["losses"]',
            )
        if any(not c.strip() for c in settings.hook_collections):
            raise AttachError(f"{ruleset.source}: [profiler] hook_collections has an empty name")


def _check_s3(path: str, what: str) -> None:
    if not _S3_PATTERN.match(path):
        raise AttachError(f"{what} must be an s3://bucket/prefix URI, got {path!r}")


def check_instance_type(instance_type: Any, ruleset: RuleSet) -> None:
    """SageMaker Debugger profiling does not run on Trainium; the SDK silently turns it off."""
    if (
        isinstance(instance_type, str)
        and _TRAINIUM.match(instance_type)
        and not ruleset.profiler.disable_profiler
    ):
        raise AttachError(
            f"SageMaker Debugger profiling is not supported on {instance_type}",
            hint="set disable_profiler = true under [profiler] in the rule file for Trainium jobs",
        )


def rule_evaluator_image(region: str | None) -> str:
    """The region's ``sagemaker-debugger-rules`` image, as the SDK's image_uris gives it."""
    if not region:
        raise AttachError(
            "no AWS region: the rule evaluator image is per region",
            hint=(
                "pass region='us-west-2' (say), "
                "or set AWS_DEFAULT_REGION or a region in the AWS profile"
            ),
        )
    account = RULE_EVALUATOR_ACCOUNTS.get(region)
    if account is None:
        raise AttachError(
            f"SageMaker Debugger rules have no evaluator image in region {region!r}",
            hint=f"use one of: {', '.join(sorted(RULE_EVALUATOR_ACCOUNTS))}",
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{RULE_EVALUATOR_REPOSITORY}:{RULE_EVALUATOR_TAG}"


def rule_arguments(ruleset: RuleSet) -> dict[str, dict[str, Any]]:
    """Enabled SageMaker built-in rule -> keyword arguments of ``rule_configs.<Rule>(...)``.

    ``ProfilerReport`` runs every built-in rule itself; it gets the rule file's values of
    all of them as ``<Rule>_<param>`` overrides, so its report uses the same thresholds.
    """
    check_ruleset(ruleset)
    builtin = {
        n: v
        for n, v in ruleset.rules.items()
        if CATALOG[n].sagemaker_builtin and n != ProfilerReport.id
    }
    out: dict[str, dict[str, Any]] = {}
    for name in ruleset.sagemaker_rules():
        if name == ProfilerReport.id:
            out[name] = {
                f"{rule}_{key}": value
                for rule, values in builtin.items()
                for key, value in _set_values(values).items()
            }
        else:
            out[name] = _set_values(ruleset.rules[name])
    if len(out) > _MAX_RULES:
        raise AttachError(f"{len(out)} profiler rules; SageMaker accepts at most {_MAX_RULES}")
    return out


def _set_values(values: p.RuleParams) -> dict[str, Any]:
    return {k: v for k, v in values.model_dump().items() if v is not None}


def _param_string(value: Any) -> str:
    """The SDK sends ``str(value)`` for every rule parameter; so do we."""
    return str(value)


def profiler_rule_configurations(
    ruleset: RuleSet, region: str | None, *, rule_image: str | None = None
) -> list[dict[str, Any]]:
    """ProfilerRuleConfigurations: one entry per enabled built-in rule (none when the
    profiler is disabled: SageMaker cannot evaluate rules without profiler data).
    ``rule_image`` names the evaluator image instead of the region's (a preview's placeholder)."""
    arguments = rule_arguments(ruleset)
    if ruleset.profiler.disable_profiler or not arguments:
        return []
    image = rule_image or rule_evaluator_image(region)
    configs: list[dict[str, Any]] = []
    for name, kwargs in arguments.items():
        parameters = {k: _param_string(v) for k, v in kwargs.items()}
        parameters["rule_to_invoke"] = name
        if len(parameters) > _MAX_RULE_PARAMETERS:
            raise AttachError(
                f"rule {name} would get {len(parameters)} RuleParameters; "
                f"SageMaker accepts at most {_MAX_RULE_PARAMETERS}"
            )
        configs.append(
            {
                "RuleConfigurationName": name,
                "RuleEvaluatorImage": image,
                "RuleParameters": parameters,
            }
        )
    return configs


def training_rule_arguments(ruleset: RuleSet) -> dict[str, dict[str, Any]]:
    """Enabled Debugger training rule -> its parameters for Debugger's rule container.

    Only with ``[profiler] debugger_hook = true``: Debugger's training rules read the tensors
    its hook saves, so without the hook their containers would have nothing to judge. A rule
    that cannot run as configured (TensorVariance without bounds) is left off."""
    check_ruleset(ruleset)
    if not ruleset.profiler.debugger_hook:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, values in ruleset.rules.items():
        rule_cls = CATALOG[name]
        if not getattr(rule_cls, "debugger_builtin", False) or not ruleset.enabled(name):
            continue
        kwargs = rule_cls().debugger_rule_parameters(values)  # type: ignore[attr-defined]
        if kwargs is not None:
            out[name] = kwargs
    if len(out) > _MAX_RULES:
        raise AttachError(
            f"{len(out)} Debugger training rules; SageMaker accepts at most {_MAX_RULES}"
        )
    return out


def training_hook_collections(ruleset: RuleSet) -> list[str]:
    """The hook's collections: the rule file's ``hook_collections``, then those the attached
    training rules read (their ``debugger_collections`` and ``collection_names``), once each."""
    if not ruleset.profiler.debugger_hook:
        return []
    names = list(ruleset.profiler.hook_collections)
    for name, kwargs in training_rule_arguments(ruleset).items():
        names += list(getattr(CATALOG[name], "debugger_collections", ()))
        names += [
            c.strip() for c in str(kwargs.get("collection_names") or "").split(",") if c.strip()
        ]
    out = list(dict.fromkeys(names))
    if len(out) > _MAX_COLLECTIONS:
        raise AttachError(
            f"the Debugger hook would save {len(out)} collections; "
            f"SageMaker accepts at most {_MAX_COLLECTIONS}"
        )
    return out


def debug_rule_configurations(
    ruleset: RuleSet, region: str | None, *, rule_image: str | None = None
) -> list[dict[str, Any]]:
    """DebugRuleConfigurations: one Debugger rule container per attached training rule,
    parameters as strings with ``rule_to_invoke`` (the SDK's ``Rule.sagemaker`` shape)."""
    arguments = training_rule_arguments(ruleset)
    if not arguments:
        return []
    image = rule_image or rule_evaluator_image(region)
    configs: list[dict[str, Any]] = []
    for name, kwargs in arguments.items():
        parameters = {k: _param_string(v) for k, v in kwargs.items()}
        parameters["rule_to_invoke"] = name
        configs.append(
            {
                "RuleConfigurationName": name,
                "RuleEvaluatorImage": image,
                "RuleParameters": parameters,
            }
        )
    return configs


def profiler_config(ruleset: RuleSet, s3_output_path: str) -> dict[str, Any]:
    """ProfilerConfig; SageMaker writes under ``<S3OutputPath>/<job>/profiler-output/``."""
    settings = ruleset.profiler
    if settings.disable_profiler:
        return {"DisableProfiler": True}
    return {
        "S3OutputPath": s3_output_path,
        "ProfilingIntervalInMilliseconds": settings.system_monitor_interval_millis,
        "DisableProfiler": False,
    }


def debug_hook_config(ruleset: RuleSet, s3_output_path: str) -> dict[str, Any] | None:
    """DebugHookConfig with the file's collections and those the training rules read, or
    None when debugging is not asked for."""
    if not ruleset.profiler.debugger_hook:
        return None
    collections: list[dict[str, Any]] = []
    for c in training_hook_collections(ruleset):
        entry: dict[str, Any] = {"CollectionName": c}
        if c in DEBUGGER_COLLECTION_PARAMETERS:
            entry["CollectionParameters"] = dict(DEBUGGER_COLLECTION_PARAMETERS[c])
        collections.append(entry)
    return {"S3OutputPath": s3_output_path, "CollectionConfigurations": collections}


def tensorboard_output_config(ruleset: RuleSet, s3_output_path: str) -> dict[str, Any] | None:
    """TensorBoardOutputConfig, so torch.profiler traces written under
    /opt/ml/output/tensorboard are uploaded; SageMaker adds ``<job>/tensorboard-output/``
    to S3OutputPath (see sagemaker v2 ``Estimator.latest_job_tensorboard_artifacts_path``)."""
    if not ruleset.profiler.tensorboard_output:
        return None
    return {"S3OutputPath": s3_output_path, "LocalPath": TENSORBOARD_LOCAL_PATH}


def build_fields(
    ruleset: RuleSet,
    region: str | None,
    s3_output_path: str | None,
    *,
    rule_image: str | None = None,
) -> dict[str, Any]:
    """Every CreateTrainingJob field stepscope sets, PascalCase as the API names them.

    ``s3_output_path`` is the job's output base (the rule file's ``[profiler]
    s3_output_path`` wins over it); fields that are off in the rule file are absent.
    ``rule_image`` replaces the region's rule evaluator image: ``stepscope attach --print``
    previews a job on a machine with no AWS region with a marked placeholder there.
    """
    check_ruleset(ruleset)
    base = ruleset.profiler.s3_output_path or s3_output_path
    if not base:
        raise AttachError(
            "no S3 output path for profiler output",
            hint=(
                "pass s3_output_path (CLI: --s3-output-path) or set s3_output_path under [profiler]"
            ),
        )
    _check_s3(base, "s3_output_path")
    fields: dict[str, Any] = {"ProfilerConfig": profiler_config(ruleset, base)}
    rules = profiler_rule_configurations(ruleset, region, rule_image=rule_image)
    if rules:
        fields["ProfilerRuleConfigurations"] = rules
    debug_rules = debug_rule_configurations(ruleset, region, rule_image=rule_image)
    if debug_rules:
        fields["DebugRuleConfigurations"] = debug_rules
    hook = debug_hook_config(ruleset, base)
    if hook is not None:
        fields["DebugHookConfig"] = hook
    tensorboard = tensorboard_output_config(ruleset, base)
    if tensorboard is not None:
        fields["TensorBoardOutputConfig"] = tensorboard
    return fields

"""``stepscope attach --print``: show what the rule file puts on a SageMaker training job.

Why print rather than launch: attaching happens in the user's launch code (SDK v2, SDK
v3 or boto3, see docs/attach.md); the CLI shows exactly what that code will send, for
review and for CI diffs, without needing either SDK installed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rules.attach.boto3_request import create_training_job_fields, default_region
from rules.attach.common import (
    TENSORBOARD_LOCAL_PATH,
    build_fields,
    resolve_ruleset,
    rule_arguments,
)
from rules.ruleset import RuleSet
from stepscope.cli.common import user_errors

__all__ = ["attach_command", "v2_source", "v3_source"]

PLACEHOLDER_S3 = "s3://YOUR-BUCKET/stepscope"
#: Built-in rules smdebug_rulesconfig (``sagemaker.debugger.rule_configs``) does not re-export.
NOT_IN_RULE_CONFIGS = frozenset({"Dataloader"})

USAGE = """\
stepscope attach puts the rule file's profiler settings and SageMaker rules on a training job.
It is done in your launch code, before the job starts:

  SDK v2 (sagemaker>=2.257,<3), any Estimator / PyTorch / HuggingFace:
      from rules.attach.sdk_v2 import attach_to_estimator
      attach_to_estimator(estimator, rules_file="rules.toml"); estimator.fit(...)

  SDK v3 (sagemaker>=3.3,<4), ModelTrainer (instead of model_trainer.train()):
      from rules.attach.sdk_v3 import train_with_profiling
      job = train_with_profiling(model_trainer, rules_file="rules.toml")

  boto3 / raw CreateTrainingJob requests:
      from rules.attach.boto3_request import apply_to_request
      client.create_training_job(**apply_to_request(request, rules_file="rules.toml"))

To see what would be attached:  stepscope attach --print [--sdk v2|v3|boto3] [--rules FILE]
"""


@click.command("attach")
@click.option("--print", "show", is_flag=True, help="Print what would be attached (nothing is launched).")
@click.option("--sdk", type=click.Choice(["boto3", "v2", "v3"]), default="boto3", show_default=True,
              help="Show it as CreateTrainingJob JSON (boto3) or as SDK v2 / v3 Python.")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False), default=None,
              help="Rule file (default: stepscope's built-in defaults).")
@click.option("--region", default=None,
              help="Region of the rule evaluator image (default: AWS_DEFAULT_REGION / profile).")
@click.option("--s3-output-path", default=None,
              help="Job output base for profiler/TensorBoard output (default: [profiler] s3_output_path).")
@user_errors
def attach_command(show: bool, sdk: str, rules_file: str | None, region: str | None,
                   s3_output_path: str | None) -> None:
    """Show the profiler config and rules the rule file attaches to SageMaker jobs."""
    if not show:
        click.echo(USAGE, nl=False)
        return
    rs = resolve_ruleset(None, rules_file)
    base = rs.profiler.s3_output_path or s3_output_path or PLACEHOLDER_S3
    if sdk == "boto3":
        text = json.dumps(create_training_job_fields(rs, region, base), indent=2) + "\n"
    elif sdk == "v2":
        text = v2_source(rs, s3_output_path)
    else:
        text = v3_source(build_fields(rs, _region(region), base))
    if base == PLACEHOLDER_S3:
        click.echo(f"stepscope: note: no --s3-output-path or [profiler] s3_output_path; showing {base}",
                   err=True)
    sys.stdout.write(text)


def _region(region: str | None) -> str | None:
    return region or default_region()


def _call(name: str, kwargs: dict[str, Any], indent: str = "") -> str:
    if not kwargs:
        return f"{name}()"
    inner = ",\n".join(f"{indent}    {k}={v!r}" for k, v in kwargs.items())
    return f"{name}(\n{inner},\n{indent})"


def v2_source(rs: RuleSet, s3_output_path: str | None) -> str:
    """SDK v2 code equivalent to ``attach_to_estimator`` (the estimator fills in the output
    path and the region's rule image at fit())."""
    settings = rs.profiler
    s3 = settings.s3_output_path or s3_output_path
    lines = [
        "# SageMaker SDK v2: what rules.attach.sdk_v2.attach_to_estimator(estimator) sets.",
        f"# Rule file: {rs.source}",
        "from sagemaker.debugger import (",
        "    CollectionConfig, DebuggerHookConfig, ProfilerConfig, ProfilerRule,",
        "    TensorBoardOutputConfig, rule_configs,",
        ")",
        "from smdebug_rulesconfig.profiler_rules import rules as profiler_rules  # has Dataloader",
        "",
    ]
    if settings.disable_profiler:
        lines += ["disable_profiler = True", "profiler_config = ProfilerConfig(disable_profiler=True)",
                  "rules = []"]
    else:
        rule_arguments(rs)  # validate before printing
        lines += [
            "disable_profiler = False",
            "profiler_config = " + _call("ProfilerConfig", {
                "s3_output_path": settings.s3_output_path,
                "system_monitor_interval_millis": settings.system_monitor_interval_millis,
            }),
            "rules = [",
        ]
        for name, kwargs in rule_arguments(rs).items():
            module = "profiler_rules" if name in NOT_IN_RULE_CONFIGS else "rule_configs"
            lines.append(f"    ProfilerRule.sagemaker({_call(f'{module}.{name}', kwargs, '    ')}),")
        lines += [
            "]",
            '# stepscope leaves unset parameters out (e.g. StepOutlier mode) rather than sending "None":',
            "for rule in rules:",
            "    rule.rule_parameters = {k: v for k, v in rule.rule_parameters.items() if v is not None}",
        ]
    if settings.debugger_hook:
        collections = ", ".join(f"CollectionConfig(name={c!r})" for c in settings.hook_collections)
        lines.append(
            f"debugger_hook_config = DebuggerHookConfig(s3_output_path={settings.s3_output_path!r}, "
            f"collection_configs=[{collections}])"
        )
    else:
        lines.append("debugger_hook_config = False")
    if settings.tensorboard_output:
        lines.append(
            "tensorboard_output_config = TensorBoardOutputConfig(\n"
            f"    s3_output_path={s3 or PLACEHOLDER_S3!r},  # default: the estimator's output_path\n"
            f"    container_local_output_path={TENSORBOARD_LOCAL_PATH!r},\n)"
        )
    else:
        lines.append("tensorboard_output_config = None")
    lines += [
        "",
        "# Pass these to the estimator, e.g. PyTorch(..., rules=rules, profiler_config=profiler_config,",
        "# debugger_hook_config=debugger_hook_config, tensorboard_output_config=tensorboard_output_config,",
        "# disable_profiler=disable_profiler), or in one call before fit():",
        "#   from rules.attach.sdk_v2 import attach_to_estimator",
        f"#   attach_to_estimator(estimator, rules_file={rs.source!r})",
    ]
    return "\n".join(lines) + "\n"


def v3_source(fields: dict[str, Any]) -> str:
    """SDK v3 ``TrainingJob.create`` keyword arguments as sagemaker.core.shapes code."""
    lines = [
        "# SageMaker SDK v3: the TrainingJob.create(...) arguments that",
        "# rules.attach.sdk_v3.train_with_profiling(model_trainer) adds to ModelTrainer's own.",
        "from sagemaker.core import shapes",
        "",
    ]
    pc = fields["ProfilerConfig"]
    pc_kwargs = {"s3_output_path": pc.get("S3OutputPath"),
                 "profiling_interval_in_milliseconds": pc.get("ProfilingIntervalInMilliseconds"),
                 "disable_profiler": pc["DisableProfiler"]}
    lines.append("profiler_config = " + _call("shapes.ProfilerConfig",
                                              {k: v for k, v in pc_kwargs.items() if v is not None}))
    lines.append("profiler_rule_configurations = [")
    for r in fields.get("ProfilerRuleConfigurations", []):
        lines.append("    " + _call("shapes.ProfilerRuleConfiguration", {
            "rule_configuration_name": r["RuleConfigurationName"],
            "rule_evaluator_image": r["RuleEvaluatorImage"],
            "rule_parameters": r["RuleParameters"],
        }, "    ") + ",")
    lines.append("]")
    hook = fields.get("DebugHookConfig")
    if hook:
        names = ", ".join(f"shapes.CollectionConfiguration(collection_name={c['CollectionName']!r})"
                          for c in hook["CollectionConfigurations"])
        lines.append(f"debug_hook_config = shapes.DebugHookConfig(s3_output_path={hook['S3OutputPath']!r}, "
                     f"collection_configurations=[{names}])")
    else:
        lines.append("debug_hook_config = None")
    tb = fields.get("TensorBoardOutputConfig")
    if tb:
        lines.append(f"tensor_board_output_config = shapes.TensorBoardOutputConfig("
                     f"s3_output_path={tb['S3OutputPath']!r}, local_path={tb['LocalPath']!r})")
    else:
        lines.append("tensor_board_output_config = None")
    lines += [
        "",
        "# In one call, instead of model_trainer.train():",
        "#   from rules.attach.sdk_v3 import train_with_profiling",
        "#   job = train_with_profiling(model_trainer, rules_file='rules.toml')",
    ]
    return "\n".join(lines) + "\n"


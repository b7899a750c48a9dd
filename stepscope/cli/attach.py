"""``stepscope attach --print``: show what attaching puts on a SageMaker training job.

Why print rather than launch: attaching happens in the user's launch code (SDK v2, SDK
v3 or boto3, see docs/attach.md); the CLI shows exactly what that code will send, for
review and for CI diffs, without needing either SDK installed. By default that is
stepscope's collectors (the job's command under ``stepscope run``, the collector wheel
shipped with it, TensorBoard output to S3); ``--debugger`` shows SageMaker Debugger's
fields instead. ``--wheel DIR`` writes the collector wheel, for images of one's own.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click
from click.core import ParameterSource

from rules.ruleset import RuleSet
from stepscope.attach.boto3_request import collector_fields, default_region
from stepscope.attach.collectors import (
    COLLECTOR_REQUIRES,
    ENTRY_SHIM,
    build_collector_wheel,
    collector_wheel_name,
    image_install_commands,
    launcher_command,
    tensorboard_fields,
)
from stepscope.attach.common import (
    DEBUGGER_COLLECTION_PARAMETERS,
    RULE_EVALUATOR_REPOSITORY,
    RULE_EVALUATOR_TAG,
    TENSORBOARD_LOCAL_PATH,
    build_fields,
    resolve_ruleset,
    rule_arguments,
    training_hook_collections,
    training_rule_arguments,
)
from stepscope.attach.sdk_v2 import debugger_rule_collections, rule_configs_name
from stepscope.cli.common import Command, user_errors
from stepscope.report.rule_info import in_rule_configs

__all__ = [
    "attach_command",
    "v2_collectors_source",
    "v2_source",
    "v3_collectors_source",
    "v3_source",
]

PLACEHOLDER_S3 = "s3://YOUR-BUCKET/stepscope"
#: what a preview shows for the job's command when --entrypoint is not given
PLACEHOLDER_COMMAND = "<your-command>"
PLACEHOLDER_ENTRY = "<entry_point>"
#: The rule evaluator image a preview shows when no region is known (its account is per region).
PLACEHOLDER_IMAGE = (
    "<account-of-your-region>.dkr.ecr.<your-region>.amazonaws.com/"
    f"{RULE_EVALUATOR_REPOSITORY}:{RULE_EVALUATOR_TAG}"
)
DEFAULT_RULES = "<defaults>"  # RuleSet.source without a rule file

USAGE = """\
stepscope attach runs a SageMaker training job under stepscope's collectors (stepscope run):
the job's command under the launcher, the collector shipped with the job, TensorBoard output
to S3 during the job. With debugger=True (--debugger) it attaches SageMaker Debugger's
ProfilerConfig and rule containers instead (accounts that still have Debugger).
It is done in your launch code, before the job starts:

  SDK v2 (sagemaker>=2.257,<3), any Estimator / PyTorch / HuggingFace:
      from stepscope.attach import attach_to_estimator
      attach_to_estimator(estimator); estimator.fit(...)

  SDK v3 (sagemaker>=3.3,<4), ModelTrainer (instead of model_trainer.train()):
      from stepscope.attach import train_with_profiling
      job = train_with_profiling(model_trainer)

  boto3 / raw CreateTrainingJob requests (the image must contain the collector):
      from stepscope.attach import apply_to_request
      client.create_training_job(**apply_to_request(request))

To see what would be attached:  stepscope attach --print [--sdk v2|v3|boto3] [--debugger]
To write the collector wheel (for an image of your own):  stepscope attach --wheel DIR
"""


@click.command("attach", cls=Command)
@click.option(
    "--print", "show", is_flag=True, help="Print what would be attached (nothing is launched)."
)
@click.option(
    "--sdk",
    type=click.Choice(["boto3", "v2", "v3"]),
    default="boto3",
    show_default=True,
    help="Show it as CreateTrainingJob JSON (boto3) or as SDK v2 / v3 Python.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Rule file (default: stepscope's built-in defaults).",
)
@click.option(
    "--region",
    default=None,
    help="Region of the rule evaluator image (default: AWS_DEFAULT_REGION / profile).",
)
@click.option(
    "--s3-output-path",
    default=None,
    help="Job output base for profiler/TensorBoard output (default: [profiler] s3_output_path).",
)
@click.option(
    "--debugger",
    is_flag=True,
    help=(
        "Show SageMaker Debugger's ProfilerConfig and rule containers "
        "instead of stepscope's collectors."
    ),
)
@click.option(
    "--entrypoint",
    default=None,
    metavar="COMMAND",
    help=(
        "The job's command (boto3: the ContainerEntrypoint, e.g. 'python train.py'; "
        "v2/v3: the entry point script)."
    ),
)
@click.option(
    "--wheel",
    "wheel_dir",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write the collector wheel into DIR (for an image of your own).",
)
@user_errors
def attach_command(
    show: bool,
    sdk: str,
    rules_file: str | None,
    region: str | None,
    s3_output_path: str | None,
    debugger: bool,
    entrypoint: str | None,
    wheel_dir: str | None,
) -> None:
    """Show what attaching puts on SageMaker jobs: stepscope's collectors, or Debugger's fields.

    A preview needs no AWS configuration: without a region the rule image is a marked
    placeholder, without an S3 path the output path is (a note on stderr says which).
    """
    ctx = click.get_current_context()
    if debugger and entrypoint is not None:
        raise click.UsageError(
            "--entrypoint is for the collectors; --debugger does not change the command", ctx=ctx
        )
    if wheel_dir is not None:
        wheel = build_collector_wheel(wheel_dir)
        click.echo(f"stepscope: wrote {wheel}" if show else str(wheel), err=show)
    if not show:
        given = [
            opt
            for param in ctx.command.params
            if param.name not in (None, "show", "wheel_dir")
            and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT
            for opt in param.opts[:1]
        ]
        if given:  # `attach --sdk v2` must not print the usage text as if --sdk meant nothing
            raise click.UsageError(
                f"{', '.join(given)} only change{'s' if len(given) == 1 else ''} "
                "what --print shows; add --print",
                ctx=ctx,
            )
        if wheel_dir is None:
            click.echo(USAGE, nl=False)
        return
    rs = resolve_ruleset(None, rules_file)
    if not debugger:
        _print_collectors(rs, sdk, s3_output_path, entrypoint)
        return
    base = rs.profiler.s3_output_path or s3_output_path or PLACEHOLDER_S3
    region = region or default_region()
    image = None if region else PLACEHOLDER_IMAGE
    if sdk == "boto3":
        text = json.dumps(build_fields(rs, region, base, rule_image=image), indent=2) + "\n"
    elif sdk == "v2":
        text = v2_source(rs, s3_output_path)
    else:
        text = v3_source(build_fields(rs, region, base, rule_image=image), rules_file=rs.source)
    if PLACEHOLDER_S3 in text:
        click.echo(
            "stepscope: note: no --s3-output-path or [profiler] s3_output_path; "
            f"showing {PLACEHOLDER_S3}",
            err=True,
        )
    if image is not None and image in text:
        click.echo(
            "stepscope: note: no --region, AWS_DEFAULT_REGION or profile region; "
            "the rule image shows "
            "<your-region> (give --region for the real one)",
            err=True,
        )
    sys.stdout.write(text)


def _print_collectors(
    rs: RuleSet, sdk: str, s3_output_path: str | None, entrypoint: str | None
) -> None:
    """Collectors mode: the fields or code on stdout; for boto3 (JSON) the mode and what to
    put into the image on stderr, as comments cannot go into JSON."""
    base = rs.profiler.s3_output_path or s3_output_path
    if sdk == "boto3":
        command = shlex.split(entrypoint) if entrypoint else [PLACEHOLDER_COMMAND]
        fields = collector_fields(rs, base or PLACEHOLDER_S3, command)
        text = json.dumps(fields, indent=2) + "\n"
        wheel = collector_wheel_name()
        click.echo(
            "stepscope: mode: collectors (stepscope run); "
            "SageMaker Debugger's fields only with --debugger",
            err=True,
        )
        click.echo(
            "stepscope: the image must contain the collector: "
            f"`stepscope attach --wheel DIR` writes {wheel}; "
            f"Dockerfile: {' ; '.join(image_install_commands(wheel))}",
            err=True,
        )
        if not entrypoint:
            click.echo(
                "stepscope: note: no --entrypoint (the job's command); "
                f"showing {PLACEHOLDER_COMMAND}",
                err=True,
            )
    elif sdk == "v2":
        text = v2_collectors_source(rs, s3_output_path, entrypoint)
    else:
        text = v3_collectors_source(rs, s3_output_path, entrypoint)
    if PLACEHOLDER_S3 in text:
        click.echo(
            "stepscope: note: no --s3-output-path or [profiler] s3_output_path; "
            f"showing {PLACEHOLDER_S3}",
            err=True,
        )
    sys.stdout.write(text)


def _entry_target(entry: str) -> list[str]:
    """What the shim runs the entry point with (as the SageMaker toolkits do)."""
    return ["/bin/sh", entry] if entry.endswith(".sh") else ["python", entry]


def _collector_header(sdk: str, rs: RuleSet, call: str) -> list[str]:
    wheel = collector_wheel_name()
    return [
        f"# SageMaker SDK {sdk}, collectors mode (stepscope run): what {call} does.",
        f"# Rule file: {_rule_file_label(rs.source)}",
        (
            "# SageMaker Debugger: off (its profiler, profiler rules and hook; "
            "--debugger shows them instead)."
        ),
        "#",
        f"# Shipped with the job: {wheel},",
        "# the collector only (stepscope.collectors; it declares",
        (
            f"# {' and '.join(COLLECTOR_REQUIRES)} with no version, "
            "so pip adds them only where missing and"
        ),
        "# changes no package the container has). It goes into a staged copy of the source folder",
        "# (a new folder holding the entry point when there is none; yours is not changed), with",
        f"# './{wheel}' appended to its requirements file,",
        "# which the container installs before the job's command starts.",
    ]


def v2_collectors_source(
    rs: RuleSet, s3_output_path: str | None, entry_point: str | None = None
) -> str:
    """SDK v2 collectors mode: what ``attach_to_estimator`` sets, as code plus comments."""
    s3 = rs.profiler.s3_output_path or s3_output_path
    entry = entry_point or PLACEHOLDER_ENTRY
    launcher = launcher_command(
        tensorboard_fields(rs, s3 or PLACEHOLDER_S3)["LocalPath"],
        rs.profiler.system_monitor_interval_millis,
    )
    mark = (
        "" if s3 else "  # your estimator's output_path (attach_to_estimator takes it from there)"
    )
    lines = [
        *_collector_header("v2", rs, "stepscope.attach.sdk_v2.attach_to_estimator(estimator)"),
        (
            f"# Entry point: {ENTRY_SHIM} (generated in that copy), "
            "which runs, with the hyperparameters as"
        ),
        (
            "# arguments and under torchrun / mpirun when distribution= asks for it "
            "(one sampler per node):"
        ),
        f"#   {shlex.join([*launcher, *_entry_target(entry)])} ARGS",
        "# An estimator with no entry point (its image's own) gets container_entry_point =",
        f"#   {[*launcher, PLACEHOLDER_COMMAND]}; that image must contain the collector.",
        "from sagemaker.debugger import TensorBoardOutputConfig",
        "",
        "disable_profiler = True",
        "debugger_hook_config = False",
        "tensorboard_output_config = TensorBoardOutputConfig(",
        f"    s3_output_path={s3 or PLACEHOLDER_S3!r},{mark}",
        f"    container_local_output_path={TENSORBOARD_LOCAL_PATH!r},",
        ")",
        "",
        "# In one call, before fit() (it also stages the code and sets the entry point as above):",
        "#   from stepscope.attach import attach_to_estimator",
        f"#   {_attach_call('attach_to_estimator', 'estimator', rs.source)}",
    ]
    return "\n".join(lines) + "\n"


def v3_collectors_source(
    rs: RuleSet, s3_output_path: str | None, entry_script: str | None = None
) -> str:
    """SDK v3 collectors mode: what ``train_with_profiling`` changes, as code plus comments."""
    s3 = rs.profiler.s3_output_path or s3_output_path
    entry = entry_script or PLACEHOLDER_ENTRY
    tb = tensorboard_fields(rs, s3 or PLACEHOLDER_S3)
    launcher = launcher_command(tb["LocalPath"], rs.profiler.system_monitor_interval_millis)
    mark = "" if s3 else "  # the trainer's output path"
    lines = [
        *_collector_header("v3", rs, "stepscope.attach.sdk_v3.train_with_profiling(model_trainer)"),
        "# The job gets a copy of the trainer's SourceCode (the trainer keeps its own):",
        f"#   entry_script={ENTRY_SHIM!r} (generated), which runs, under the Torchrun / MPI driver",
        "#   when distributed= asks for it (one sampler per node):",
        f"#     {shlex.join([*launcher, *_entry_target(entry)])} ARGS",
        "#   or, for SourceCode(command=...):",
        f"#     command={shlex.join([*launcher, PLACEHOLDER_COMMAND])!r}",
        "from sagemaker.core import shapes",
        "",
        "tensor_board_output_config = shapes.TensorBoardOutputConfig(",
        f"    s3_output_path={tb['S3OutputPath']!r},{mark}",
        f"    local_path={tb['LocalPath']!r},",
        ")",
        "",
        "# In one call, instead of model_trainer.train():",
        "#   from stepscope.attach import train_with_profiling",
        f"#   job = {_attach_call('train_with_profiling', 'model_trainer', rs.source)}",
    ]
    return "\n".join(lines) + "\n"


def _attach_call(function: str, obj: str, rules_source: str) -> str:
    """``attach_to_estimator(estimator, rules_file='rules.toml')``; no rules_file for the
    defaults."""
    return (
        f"{function}({obj})"
        if rules_source == DEFAULT_RULES
        else f"{function}({obj}, rules_file={rules_source!r})"
    )


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
        "# SageMaker SDK v2: what stepscope.attach.sdk_v2.attach_to_estimator(estimator) sets.",
        f"# Rule file: {_rule_file_label(rs.source)}",
        "from sagemaker.debugger import (",
        "    CollectionConfig, DebuggerHookConfig, ProfilerConfig, ProfilerRule, Rule,",
        "    TensorBoardOutputConfig, rule_configs,",
        ")",
        "from smdebug_rulesconfig.profiler_rules import rules as profiler_rules  # has Dataloader",
        "",
    ]
    if settings.disable_profiler:
        lines += [
            "disable_profiler = True",
            "profiler_config = ProfilerConfig(disable_profiler=True)",
            "rules = []",
        ]
    else:
        rule_arguments(rs)  # validate before printing
        lines += [
            "disable_profiler = False",
            # no s3_output_path unless the rule file sets one: the estimator uses its output path
            "profiler_config = "
            + _call(
                "ProfilerConfig",
                _set(
                    {
                        "s3_output_path": settings.s3_output_path,
                        "system_monitor_interval_millis": settings.system_monitor_interval_millis,
                    }
                ),
            ),
            "rules = [",
        ]
        for name, kwargs in rule_arguments(rs).items():
            module = "rule_configs" if in_rule_configs(name) else "profiler_rules"
            lines.append(
                f"    ProfilerRule.sagemaker({_call(f'{module}.{name}', kwargs, '    ')}),"
            )
        lines += [
            "]",
            (
                "# stepscope leaves unset parameters out (e.g. StepOutlier mode) "
                'rather than sending "None":'
            ),
            "for rule in rules:",
            (
                "    rule.rule_parameters = "
                "{k: v for k, v in rule.rule_parameters.items() if v is not None}"
            ),
        ]
    training = training_rule_arguments(rs)
    if training:
        lines.append(
            "# SageMaker Debugger's training rules (their containers read the hook's tensors):"
        )
        lines.append("rules += [")
        for name, kwargs in training.items():
            saved = ", ".join(
                _collection_source(c) for c in debugger_rule_collections(name, kwargs)
            )
            lines.append(
                f"    Rule.sagemaker(rule_configs.{rule_configs_name(name)}(), "
                f"rule_parameters={ {k: str(v) for k, v in kwargs.items()}!r}, "
                f"collections_to_save=[{saved}]),"
            )
        lines.append("]")
    if settings.debugger_hook:
        collections = ", ".join(_collection_source(c) for c in training_hook_collections(rs))
        where = f"s3_output_path={settings.s3_output_path!r}, " if settings.s3_output_path else ""
        lines.append(
            f"debugger_hook_config = DebuggerHookConfig({where}collection_configs=[{collections}])"
        )
    else:
        lines.append("debugger_hook_config = False")
    if settings.tensorboard_output:
        mark = (
            ""
            if s3
            else "  # your estimator's output_path (attach_to_estimator takes it from there)"
        )
        lines.append(
            "tensorboard_output_config = TensorBoardOutputConfig(\n"
            f"    s3_output_path={s3 or PLACEHOLDER_S3!r},{mark}\n"
            f"    container_local_output_path={TENSORBOARD_LOCAL_PATH!r},\n)"
        )
    else:
        lines.append("tensorboard_output_config = None")
    lines += [
        "",
        (
            "# Pass these to the estimator, e.g. PyTorch(..., rules=rules, "
            "profiler_config=profiler_config,"
        ),
        (
            "# debugger_hook_config=debugger_hook_config, "
            "tensorboard_output_config=tensorboard_output_config,"
        ),
        "# disable_profiler=disable_profiler), or in one call before fit():",
        "#   from stepscope.attach import attach_to_estimator",
        f"#   {_attach_call('attach_to_estimator', 'estimator', rs.source)}",
    ]
    return "\n".join(lines) + "\n"


def _collection_source(name: str) -> str:
    parameters = DEBUGGER_COLLECTION_PARAMETERS.get(name)
    return (
        f"CollectionConfig(name={name!r}, parameters={parameters!r})"
        if parameters
        else f"CollectionConfig(name={name!r})"
    )


def _set(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Only the arguments with a value: ``ProfilerConfig(s3_output_path=None)`` reads as if
    None were sent, while the SDK fills it in."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _rule_file_label(source: str) -> str:
    return "none, stepscope's defaults" if source == DEFAULT_RULES else source


def v3_source(fields: dict[str, Any], rules_file: str = DEFAULT_RULES) -> str:
    """SDK v3 ``TrainingJob.create`` keyword arguments as sagemaker.core.shapes code
    (``rules_file``: the rule file they came from, for the one-call form at the end)."""
    lines = [
        "# SageMaker SDK v3: the TrainingJob.create(...) arguments that",
        "# stepscope.attach.sdk_v3.train_with_profiling(model_trainer) adds to ModelTrainer's own.",
        "from sagemaker.core import shapes",
        "",
    ]
    pc = fields["ProfilerConfig"]
    pc_kwargs = {
        "s3_output_path": pc.get("S3OutputPath"),
        "profiling_interval_in_milliseconds": pc.get("ProfilingIntervalInMilliseconds"),
        "disable_profiler": pc["DisableProfiler"],
    }
    lines.append(
        "profiler_config = "
        + _call("shapes.ProfilerConfig", {k: v for k, v in pc_kwargs.items() if v is not None})
    )
    lines.append("profiler_rule_configurations = [")
    for r in fields.get("ProfilerRuleConfigurations", []):
        lines.append(
            "    "
            + _call(
                "shapes.ProfilerRuleConfiguration",
                {
                    "rule_configuration_name": r["RuleConfigurationName"],
                    "rule_evaluator_image": r["RuleEvaluatorImage"],
                    "rule_parameters": r["RuleParameters"],
                },
                "    ",
            )
            + ","
        )
    lines.append("]")
    if fields.get("DebugRuleConfigurations"):
        lines.append("debug_rule_configurations = [")
        for r in fields["DebugRuleConfigurations"]:
            lines.append(
                "    "
                + _call(
                    "shapes.DebugRuleConfiguration",
                    {
                        "rule_configuration_name": r["RuleConfigurationName"],
                        "rule_evaluator_image": r["RuleEvaluatorImage"],
                        "rule_parameters": r["RuleParameters"],
                    },
                    "    ",
                )
                + ","
            )
        lines.append("]")
    hook = fields.get("DebugHookConfig")
    if hook:
        names = ", ".join(
            f"shapes.CollectionConfiguration(collection_name={c['CollectionName']!r}"
            + (
                f", collection_parameters={c['CollectionParameters']!r})"
                if "CollectionParameters" in c
                else ")"
            )
            for c in hook["CollectionConfigurations"]
        )
        lines.append(
            f"debug_hook_config = shapes.DebugHookConfig(s3_output_path={hook['S3OutputPath']!r}, "
            f"collection_configurations=[{names}])"
        )
    else:
        lines.append("debug_hook_config = None")
    tb = fields.get("TensorBoardOutputConfig")
    if tb:
        lines.append(
            f"tensor_board_output_config = shapes.TensorBoardOutputConfig("
            f"s3_output_path={tb['S3OutputPath']!r}, local_path={tb['LocalPath']!r})"
        )
    else:
        lines.append("tensor_board_output_config = None")
    lines += [
        "",
        "# In one call, instead of model_trainer.train():",
        "#   from stepscope.attach import train_with_profiling",
        f"#   job = {_attach_call('train_with_profiling', 'model_trainer', rules_file)}",
    ]
    return "\n".join(lines) + "\n"

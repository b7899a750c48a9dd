"""SageMaker Python SDK v2 (``sagemaker>=2.257,<3``): one call before ``fit()``.

Why through the SDK's own objects (``ProfilerRule.sagemaker(rule_configs.X(...))``,
``ProfilerConfig``...): the estimator then fills in what only it knows at ``fit()`` (the
output path, the region's rule image) exactly as for hand-written rules, and
smdebug_rulesconfig validates every parameter once more::

    from sagemaker.pytorch import PyTorch
    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = PyTorch(entry_point="train.py", ...)
    attach_to_estimator(estimator)                  # stepscope's collectors (default)
    attach_to_estimator(estimator, debugger=True)   # SageMaker Debugger instead
    estimator.fit(...)

Collectors mode: the estimator's code is staged in a copy of ``source_dir`` (the user's
folder is not written to) with the collector wheel, a ``requirements.txt`` line installing
it, and ``stepscope_entry.py``, which becomes the entry point and runs the user's one under
``python -m stepscope.collectors.launcher`` (so under torchrun / mpirun too: the toolkit
runs the shim where it ran the script). An estimator without an entry point (its image's
own) runs ``container_entry_point`` (or ``command``) under the launcher; that image must
contain the collector. Debugger's profiler and rules are turned off.

Works for ``Estimator`` and every framework estimator (``PyTorch``, ``HuggingFace``...),
all subclasses of ``sagemaker.estimator.EstimatorBase``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from rules.ruleset import RuleSet
from stepscope.attach.collectors import (
    is_launcher_command,
    launcher_command,
    stage_source,
    tensorboard_fields,
)
from stepscope.attach.common import (
    DEBUGGER_COLLECTION_PARAMETERS,
    TENSORBOARD_LOCAL_PATH,
    AttachError,
    check_instance_type,
    check_ruleset,
    resolve_ruleset,
    rule_arguments,
    rule_evaluator_image,
    training_hook_collections,
    training_rule_arguments,
)

__all__ = [
    "SUPPORTED",
    "attach_to_estimator",
    "debugger_rule_collections",
    "is_v3_object",
    "rule_configs_name",
]

log = logging.getLogger(__name__)

SUPPORTED = ">=2.257,<3"
_INSTALL_HINT = "pip install 'sagemaker>=2.257,<3'"


def is_v3_object(obj: Any) -> bool:
    """A SageMaker SDK v3 ``ModelTrainer`` (or SDK v2's own ``sagemaker.modules``
    ModelTrainer), recognised by class without importing either SDK."""
    return any(
        cls.__name__ == "ModelTrainer"
        and cls.__module__.startswith(("sagemaker.train", "sagemaker.modules"))
        for cls in type(obj).__mro__
    )


def _sdk_v2() -> Any:
    """The installed SDK's ``sagemaker.estimator`` module, when it is v2."""
    try:
        version = importlib.metadata.version("sagemaker")
    except importlib.metadata.PackageNotFoundError:
        raise AttachError("the SageMaker Python SDK is not installed", hint=_INSTALL_HINT) from None
    major = version.split(".", 1)[0]
    if major != "2":
        raise AttachError(
            f"attach_to_estimator() needs SageMaker SDK v2, but sagemaker {version} is installed",
            hint=(
                "with SDK v3 launch ModelTrainer jobs with "
                "stepscope.attach.sdk_v3.train_with_profiling()"
            ),
        )
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")  # the user chose v2
    import sagemaker.estimator

    return sagemaker.estimator


def attach_to_estimator(
    estimator: Any,
    ruleset: RuleSet | str | os.PathLike[str] | None = None,
    rules_file: str | os.PathLike[str] | None = None,
    *,
    debugger: bool = False,
    command: Sequence[str] | None = None,
) -> Any:
    """Profile a v2 estimator's job; call before ``fit()``; returns the estimator.

    Collectors mode (default): see the module docstring. ``command`` is the container's
    command for an estimator with no entry point and no ``container_entry_point``. A
    ``TensorBoardOutputConfig`` the estimator has is kept (the collectors write to its
    local path); else one under the job's output path is set.

    ``debugger=True``: the rule set's Debugger profiler config, rules, hook and TensorBoard
    config. stepscope owns the estimator's ``profiler_config``, ``disable_profiler`` and its
    ``ProfilerRule`` entries (replaced); debugging ``Rule`` entries stay. A
    ``TensorBoardOutputConfig`` the estimator already has is kept. With
    ``debugger_hook = false`` the hook is turned off (the SDK would add one by default).
    """
    if is_v3_object(estimator):
        raise AttachError(
            "attach_to_estimator() takes a SageMaker SDK v2 estimator, "
            f"got a {type(estimator).__name__} "
            f"({type(estimator).__module__}), which has no profiler fields",
            hint=(
                "launch it with stepscope.attach.sdk_v3.train_with_profiling(model_trainer) "
                "instead of .train()"
            ),
        )
    estimator_mod = _sdk_v2()
    if not isinstance(estimator, estimator_mod.EstimatorBase):
        raise AttachError(
            "attach_to_estimator() takes a sagemaker.estimator.Estimator "
            f"(or PyTorch, HuggingFace...), got {type(estimator).__name__}",
            hint=(
                "for a raw CreateTrainingJob request use "
                "stepscope.attach.boto3_request.apply_to_request()"
            ),
        )
    rs = resolve_ruleset(ruleset, rules_file)
    if not debugger:
        return _attach_collectors(estimator, rs, command)
    return _attach_debugger(estimator, rs)


def _attach_collectors(estimator: Any, rs: RuleSet, command: Sequence[str] | None) -> Any:
    """Collectors mode: stage the code with the collector and the shim, TensorBoard output on,
    Debugger off (its profiler, its ProfilerRules and its default hook)."""
    check_ruleset(rs)
    sm_debugger: Any = importlib.import_module("sagemaker.debugger")
    interval = rs.profiler.system_monitor_interval_millis
    tb = estimator.tensorboard_output_config
    out_dir = (
        getattr(tb, "container_local_output_path", None) if tb else None
    ) or TENSORBOARD_LOCAL_PATH
    entry = estimator.entry_point
    if entry is not None:
        if getattr(estimator, "git_config", None):
            raise AttachError(
                "attach_to_estimator() cannot stage code from git_config for the collectors",
                hint="clone it and pass a local source_dir, or attach with debugger=True",
            )
        source = estimator.source_dir
        if source is not None and (
            not isinstance(source, str | os.PathLike) or str(source).startswith("s3://")
        ):
            raise AttachError(
                f"source_dir {source!r} is not a local folder, "
                "so the collector cannot be added to it",
                hint="pass a local source_dir, or attach with debugger=True (--debugger)",
            )
        if command is not None:
            raise AttachError(
                f"command= is for estimators without an entry point; this one runs {entry!r}",
                hint="drop command=",
            )
        staged = stage_source(source, str(entry), out_dir=out_dir, interval_ms=interval)
        log.info(
            "stepscope: staged %s with the collector in %s", source or entry, staged.source_dir
        )
        estimator.source_dir = str(staged.source_dir)
        estimator.entry_point = staged.entry_point
    else:
        own = getattr(estimator, "container_entry_point", None)
        if own and command:
            raise AttachError(
                "the estimator has a container_entry_point and command= was given too",
                hint="pass one of them",
            )
        argv = list(own or command or [])
        if not argv:
            raise AttachError(
                "the estimator has no entry_point and no container_entry_point, "
                "so the command to run "
                "under stepscope run is unknown (the image's own ENTRYPOINT)",
                hint=(
                    "pass command=['python', 'train.py'] (the image must contain the collector), "
                    "or debugger=True"
                ),
            )
        if not is_launcher_command(argv):
            argv = [*launcher_command(out_dir, interval), *argv]
        estimator.container_entry_point = argv
    ProfilerRule = sm_debugger.ProfilerRule
    estimator.rules = [r for r in (estimator.rules or []) if not isinstance(r, ProfilerRule)]
    estimator.disable_profiler = True
    estimator.profiler_config = sm_debugger.ProfilerConfig(disable_profiler=True)
    estimator.debugger_hook_config = False
    if not tb:
        fields = tensorboard_fields(rs, rs.profiler.s3_output_path or _output_base(estimator))
        estimator.tensorboard_output_config = sm_debugger.TensorBoardOutputConfig(
            s3_output_path=fields["S3OutputPath"],
            container_local_output_path=fields["LocalPath"],
        )
    return estimator


def _attach_debugger(estimator: Any, rs: RuleSet) -> Any:
    """Debugger mode: the rule set's ProfilerConfig, ProfilerRules, hook and TensorBoard config."""
    # Typed as Any: the SDK's hints are looser than its code (disable_profiler is a bool).
    debugger: Any = importlib.import_module("sagemaker.debugger")
    ProfilerConfig, ProfilerRule = debugger.ProfilerConfig, debugger.ProfilerRule

    arguments = rule_arguments(rs)  # validates the rule set
    check_instance_type(getattr(estimator, "instance_type", None), rs)
    region = _region(estimator)
    if region is not None and arguments and not rs.profiler.disable_profiler:
        rule_evaluator_image(region)  # unknown region: fail now, not at fit()
    settings = rs.profiler

    training = training_rule_arguments(rs)
    if region is not None and training:
        rule_evaluator_image(region)
    kept = [
        r
        for r in (estimator.rules or [])
        if not isinstance(r, ProfilerRule) and getattr(r, "name", None) not in training
    ]
    kept += [_debugger_rule(debugger, name, kwargs) for name, kwargs in training.items()]
    if settings.disable_profiler:
        estimator.disable_profiler = True
        estimator.profiler_config = ProfilerConfig(disable_profiler=True)
        estimator.rules = kept
    else:
        estimator.disable_profiler = False
        estimator.profiler_config = ProfilerConfig(
            s3_output_path=settings.s3_output_path,  # None: the SDK uses the job's output path
            system_monitor_interval_millis=settings.system_monitor_interval_millis,
        )
        estimator.rules = kept + [
            _profiler_rule(ProfilerRule, debugger.rule_configs, name, kwargs)
            for name, kwargs in arguments.items()
        ]

    if settings.debugger_hook:
        estimator.debugger_hook_config = debugger.DebuggerHookConfig(
            s3_output_path=settings.s3_output_path,
            collection_configs=[_collection(debugger, c) for c in training_hook_collections(rs)],
        )
    else:
        estimator.debugger_hook_config = False

    if settings.tensorboard_output and not estimator.tensorboard_output_config:
        estimator.tensorboard_output_config = debugger.TensorBoardOutputConfig(
            s3_output_path=settings.s3_output_path or _output_base(estimator),
            container_local_output_path=TENSORBOARD_LOCAL_PATH,
        )
    return estimator


def _rule_factory(rule_configs: Any, name: str) -> Any:
    """``rule_configs.<name>``; ``Dataloader`` is only in smdebug_rulesconfig's
    ``profiler_rules.rules`` (ProfilerReport runs it; the package does not re-export it)."""
    factory = getattr(rule_configs, name, None)
    if factory is None:
        with contextlib.suppress(ImportError):
            factory = getattr(
                importlib.import_module("smdebug_rulesconfig.profiler_rules.rules"), name, None
            )
    return factory


def _profiler_rule(profiler_rule: Any, rule_configs: Any, name: str, kwargs: dict[str, Any]) -> Any:
    """``ProfilerRule.sagemaker(rule_configs.<name>(**kwargs))``, smdebug's checks as one
    line; parameters left unset are dropped rather than sent as ``"None"``."""
    factory = _rule_factory(rule_configs, name)
    if factory is None:
        raise AttachError(
            f"this SageMaker SDK has no built-in profiler rule {name!r}",
            hint=f"upgrade with {_INSTALL_HINT} or disable the rule with enabled = false",
        )
    try:
        rule = profiler_rule.sagemaker(factory(**kwargs))
    except (AssertionError, TypeError, ValueError) as exc:
        raise AttachError(f"rule {name}: {exc}", hint="fix it in the rule file") from None
    rule.rule_parameters = {k: v for k, v in (rule.rule_parameters or {}).items() if v is not None}
    return rule


def _collection(debugger: Any, name: str) -> Any:
    """``CollectionConfig(name)``, with the include regex of Debugger's regex collections."""
    parameters = DEBUGGER_COLLECTION_PARAMETERS.get(name)
    return debugger.CollectionConfig(name=name, parameters=dict(parameters) if parameters else None)


def rule_configs_name(name: str) -> str:
    """Debugger rule name -> its ``rule_configs`` function (``LossNotDecreasing`` ->
    ``loss_not_decreasing``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def debugger_rule_collections(name: str, kwargs: dict[str, Any]) -> list[str]:
    """The collections a training rule's ``Rule.sagemaker`` saves: its own and its
    ``collection_names`` (all of them also in the hook config)."""
    from rules.ruleset import CATALOG

    own = list(getattr(CATALOG[name], "debugger_collections", ()))
    own += [c.strip() for c in str(kwargs.get("collection_names") or "").split(",") if c.strip()]
    return list(dict.fromkeys(own))


def _debugger_rule(debugger: Any, name: str, kwargs: dict[str, Any]) -> Any:
    """``Rule.sagemaker(rule_configs.<snake_name>(), rule_parameters=...)`` for a Debugger
    training rule: parameters as strings, and the rule's collections given explicitly (the
    same ones the hook saves), so the request equals the SDK-neutral builder's."""
    snake = rule_configs_name(name)
    factory = getattr(debugger.rule_configs, snake, None)
    if factory is None:
        raise AttachError(
            f"this SageMaker SDK has no built-in Debugger rule {name!r} (rule_configs.{snake})",
            hint=f"upgrade with {_INSTALL_HINT} or disable the rule with enabled = false",
        )
    return debugger.Rule.sagemaker(
        base_config=factory(),
        rule_parameters={k: str(v) for k, v in kwargs.items()},
        collections_to_save=[
            _collection(debugger, c) for c in debugger_rule_collections(name, kwargs)
        ],
    )


def _region(estimator: Any) -> str | None:
    session = getattr(estimator, "sagemaker_session", None)
    region = getattr(session, "boto_region_name", None)
    return region if isinstance(region, str) else None


def _output_base(estimator: Any) -> str:
    """Where the estimator will write output: ``output_path``, else the session's default
    bucket and prefix, as ``fit()`` resolves it (the S3 call happens now, not at fit)."""
    if estimator.output_path:
        return str(estimator.output_path)
    session = estimator.sagemaker_session
    parts = [session.default_bucket(), getattr(session, "default_bucket_prefix", None)]
    return "s3://" + "/".join(x.strip("/") for x in parts if x) + "/"

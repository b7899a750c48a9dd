"""The rule file: one TOML file that both ``stepscope report`` and ``stepscope attach`` read.

Why one file: SageMaker's rule containers and the CI report must judge a job by the same
thresholds. The file names rules by their SageMaker names (``[rules.LowGPUUtilization]``),
with SageMaker's parameter names; anything it leaves out keeps the SDK default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analyzer.dimensions import DIMENSIONS
from analyzer.errors import StepscopeError
from rules import params as p
from rules.base import SEVERITIES, Rule
from rules.registry import BY_ID, RULES


class RuleFileError(StepscopeError):
    """The rule file is missing, not TOML, or names an unknown rule or parameter."""


#: rule id -> rule class (its ``params_model`` validates its ``[rules.<id>]`` table): the
#: registry's, so the file accepts exactly the registered rules
CATALOG: dict[str, type[Rule]] = BY_ID


class ProfilerSettings(BaseModel):
    """How SageMaker should profile the job (attach side)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    system_monitor_interval_millis: int = Field(
        500, description="System metrics sampling period: 100, 200, 500, 1000, 5000 or 60000 ms."
    )
    s3_output_path: str | None = Field(
        None, description="Where SageMaker writes profiler output; default: the job's output path."
    )
    disable_profiler: bool = False
    debugger_hook: bool = Field(
        False, description="Also attach a Debugger hook (tensor collections)."
    )
    hook_collections: list[str] = Field(
        default_factory=lambda: ["losses"], description="Collections saved by the Debugger hook."
    )
    tensorboard_output: bool = Field(
        True, description="Attach TensorBoardOutputConfig so torch.profiler traces reach S3."
    )


class ParallelismSettings(BaseModel):
    """How the job's process groups map to parallel dimensions, where the analysis cannot
    tell from the groups' names and ops (``analyzer.analyses.parallelism``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    groups: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "A process group's name or description -> its dimension: " + ", ".join(DIMENSIONS) + "."
        ),
    )

    @field_validator("groups")
    @classmethod
    def _known_dimensions(cls, groups: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in groups.items() if v not in DIMENSIONS}
        if bad:
            k, v = next(iter(bad.items()))
            raise ValueError(f"group {k!r}: {v!r} is not one of {', '.join(DIMENSIONS)}")
        return groups


@dataclass
class RuleSet:
    """Parsed rule file: settings, and for each enabled rule its validated parameters."""

    profiler: ProfilerSettings
    rules: dict[str, p.RuleParams] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    severity_overrides: dict[str, str] = field(default_factory=dict)
    source: str = "<defaults>"
    parallelism: ParallelismSettings = field(default_factory=ParallelismSettings)

    def params(self, name: str) -> p.RuleParams:
        return self.rules[name]

    def enabled(self, name: str) -> bool:
        return name in self.rules and name not in self.disabled

    def sagemaker_rules(self) -> dict[str, p.RuleParams]:
        """The enabled SageMaker built-ins, in registry order: what attach puts on a job."""
        return {r.id: self.rules[r.id] for r in RULES if r.sagemaker_builtin and self.enabled(r.id)}


#: the default rule file users copy; the defaults themselves come from the rule classes
#: (``rules.rule_file`` writes this file from them, and a test keeps the two equal)
DEFAULT_RULE_FILE = "default-rules.toml"


def default_rules_text() -> str:
    """The default rule file's text, from the registry (what DEFAULT_RULE_FILE holds)."""
    from rules.rule_file import render  # it reads this module's ProfilerSettings

    return render()


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    """Defaults, overridden by ``path`` when given. Errors are one line naming the fix."""
    base = _parse(default_rules_text(), "<defaults>")
    if path is None:
        return base
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleFileError(f"rule file not found: {file}") from None
    except OSError as exc:
        raise RuleFileError(f"cannot read rule file {file}: {exc.strerror}") from None
    return _parse(text, str(file), base)


def _parse(text: str, origin: str, base: RuleSet | None = None) -> RuleSet:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{origin}: not valid TOML ({exc})") from None
    unknown_top = set(doc) - {"profiler", "parallelism", "rules"}
    if unknown_top:
        raise RuleFileError(
            f"{origin}: unknown section(s) {', '.join(sorted(unknown_top))}; "
            "expected [profiler], [parallelism] and [rules.<Name>]"
        )
    profiler_doc = {**(base.profiler.model_dump() if base else {}), **doc.get("profiler", {})}
    try:
        profiler = ProfilerSettings.model_validate(profiler_doc)
    except ValidationError as exc:
        raise RuleFileError(f"{origin}: [profiler] {_first_error(exc)}") from None

    parallel_doc = {
        **(base.parallelism.model_dump() if base else {}),
        **doc.get("parallelism", {}),
    }
    try:
        parallelism = ParallelismSettings.model_validate(parallel_doc)
    except ValidationError as exc:
        raise RuleFileError(f"{origin}: [parallelism] {_first_error(exc)}") from None

    rules: dict[str, p.RuleParams] = dict(base.rules) if base else {}
    disabled: set[str] = set(base.disabled) if base else set()
    severities: dict[str, str] = dict(base.severity_overrides) if base else {}
    rules_doc = doc.get("rules", {})
    if not isinstance(rules_doc, dict):
        raise RuleFileError(f"{origin}: 'rules' must be tables like [rules.LowGPUUtilization]")
    for name, values in rules_doc.items():
        entry = CATALOG.get(name)
        if entry is None:
            close = _closest(name)
            raise RuleFileError(
                f"{origin}: unknown rule {name!r}"
                + (
                    f"; did you mean {close!r}?"
                    if close
                    else f"; known rules: {', '.join(CATALOG)}"
                )
            )
        if not isinstance(values, dict):
            raise RuleFileError(f"{origin}: [rules.{name}] must be a table of parameters")
        values = dict(values)
        enabled = values.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleFileError(f"{origin}: [rules.{name}] enabled must be true or false")
        severity = values.pop("severity", None)
        if severity is not None:
            if severity not in SEVERITIES:
                raise RuleFileError(
                    f"{origin}: [rules.{name}] severity must be "
                    f'"error", "warning" or "info" (got {severity!r})'
                )
            severities[name] = severity
        merged = {**(rules[name].model_dump() if name in rules else {}), **values}
        try:
            rules[name] = entry.params_model.model_validate(merged)
        except ValidationError as exc:
            raise RuleFileError(f"{origin}: [rules.{name}] {_first_error(exc)}") from None
        if enabled:
            disabled.discard(name)
        else:
            disabled.add(name)
    return RuleSet(
        profiler=profiler,
        rules=rules,
        disabled=disabled,
        severity_overrides=severities,
        source=origin,
        parallelism=parallelism,
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    if err.get("type") == "extra_forbidden":
        return f"unknown parameter {loc!r}"
    given: Any = err.get("input")
    return f"{loc}: {msg} (got {given!r})"


def _closest(name: str) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, list(CATALOG), n=1, cutoff=0.6)
    if found:
        return found[0]
    lower = {k.lower(): k for k in CATALOG}
    return lower.get(name.lower())

"""One registry: every rule is a class listed in ``rules.registry``, and everything that
knows the rules (the rule file, the docs page, attach, the engine) reads them from there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rules import params as p
from rules.base import SEVERITIES, Rule
from rules.engine import registry
from rules.registry import BY_ID, RULES
from rules.ruleset import CATALOG, RuleFileError, load_ruleset

REPO = Path(__file__).resolve().parents[1]


def test_ids_are_unique() -> None:
    assert len(BY_ID) == len(RULES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_every_rule_has_an_id_docs_and_a_params_model(rule: type[Rule]) -> None:
    assert rule.id == rule.__name__
    for text in (rule.title, rule.checks, rule.why, rule.recommendation):
        assert isinstance(text, str) and len(text.strip()) > 10
    assert rule.severity in SEVERITIES
    assert issubclass(rule.params_model, p.RuleParams)
    # the model lives beside the rule that reads it, under the rule's name
    assert rule.params_model.__module__ == rule.__module__
    assert rule.params_model.__name__ == f"{rule.id}Params"
    # SageMaker's rules take its scan interval (ProfilerReport passes the others' values on)
    assert issubclass(rule.params_model, p.BuiltinParams) == (
        rule.sagemaker_builtin and rule.id != "ProfilerReport"
    )


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_every_rule_has_a_section_in_the_docs(rule: type[Rule]) -> None:
    doc = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    origin = "SageMaker built-in" if rule.sagemaker_builtin else "stepscope"
    section = doc.split(f"\n## {rule.id} ({origin})\n", 1)
    assert len(section) == 2, f"no section for {rule.id} in docs/rules.md"
    body = section[1].split("\n## ", 1)[0]
    assert rule.title in body and rule.checks in body
    for name in rule.params_model.model_fields:
        assert f"| `{name}` |" in body


def test_the_rule_file_accepts_exactly_the_registered_rules(tmp_path: Path) -> None:
    assert list(CATALOG) == [r.id for r in RULES]
    assert set(load_ruleset().rules) == set(BY_ID)  # the default file sets every rule
    for rule in RULES:
        path = tmp_path / f"{rule.id}.toml"
        path.write_text(f"[rules.{rule.id}]\nenabled = false\n")
        assert not load_ruleset(path).enabled(rule.id)
    path = tmp_path / "unknown.toml"
    path.write_text("[rules.GPUHog]\n")
    with pytest.raises(RuleFileError, match="unknown rule 'GPUHog'"):
        load_ruleset(path)


def test_sagemaker_only_rules_are_attached_but_never_evaluated() -> None:
    only = {r.id for r in RULES if not r.evaluated}
    assert only == {"OverallSystemUsage", "ProfilerReport"}
    assert all(BY_ID[i].sagemaker_builtin for i in only)
    assert list(registry()) == [r.id for r in RULES if r.evaluated]
    attached = load_ruleset().sagemaker_rules()
    assert list(attached) == [r.id for r in RULES if r.sagemaker_builtin]
    assert only <= set(attached)


def test_finding_fills_in_the_rules_own_fields() -> None:
    rule = registry()["StragglerRank"]
    f = rule.finding(title="t", message="m", evidence={"rank": 1}, where="rank 1")
    assert (f.rule, f.severity, f.recommendation, f.where) == (
        "StragglerRank",
        "error",
        rule.recommendation,
        "rank 1",
    )


def test_reading_the_registry_loads_no_dataframe_library() -> None:
    """The attach side (a training launcher) reads the rules' parameters and flags only: the
    rule modules load pandas and pyarrow when they evaluate, not when they are imported."""
    code = (
        "import sys, rules.registry, rules.ruleset, rules.docs, stepscope.attach.common; "
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_the_default_rule_file_is_the_registrys() -> None:
    """rules/default-rules.toml is written from the rule classes (``python -m rules.rule_file``):
    every parameter default once, in the rule's own module."""
    from rules.rule_file import render

    committed = (REPO / "rules" / "default-rules.toml").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m rules.rule_file > rules/default-rules.toml"

"""docs/rules.md is generated from the registry; it must match the code."""

from pathlib import Path

from rules.docs import render


def test_rules_doc_is_current() -> None:
    committed = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text()
    assert committed == render(), "docs/rules.md is stale: run `python -m rules.docs > docs/rules.md`"

"""docs/rules.md and docs/analyses.md are generated from the code; they must match it."""

from pathlib import Path

from rules.docs import render


def test_rules_doc_is_current() -> None:
    committed = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text()
    assert committed == render(), (
        "docs/rules.md is stale: run `python -m rules.docs > docs/rules.md`"
    )


def test_analyses_doc_is_current() -> None:
    from analyzer.analyses.docs import render as render_analyses

    committed = (Path(__file__).resolve().parents[1] / "docs" / "analyses.md").read_text()
    assert committed == render_analyses(), (
        "docs/analyses.md is stale: run `python -m analyzer.analyses.docs > docs/analyses.md`"
    )

"""A new rule is one module plus one registry line: everything else finds it.

The throwaway rule below is written as a module of its own, and the registry line is
simulated by appending its class to ``rules.registry.RULES`` before anything else reads the
registry (in a fresh interpreter). Then the rule must appear, with no other edit, in the
default rule file, the docs page, the report (its row, its findings, their group line read
from the class), report.md, and the dashboard's page map.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"

RULE_MODULE = '''
"""ThrownAway -- a throwaway stepscope rule for the test."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import RuleParams


class ThrownAwayParams(RuleParams):
    per_rank_ms: float = Field(
        1.5, ge=0, description="Milliseconds each rank throws away per step."
    )


class ThrownAway(Rule):
    id: ClassVar[str] = "ThrownAway"
    title: ClassVar[str] = "Time thrown away"
    checks: ClassVar[str] = (
        "Every rank throws `per_rank_ms` ms away per step, plus its rank number."
    )
    why: ClassVar[str] = "A test needs a rule."
    recommendation: ClassVar[str] = "Keep it."
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = ThrownAwayParams
    page: ClassVar[str] = "steps"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure("thrown_ms", "{} ms thrown away per step"),
    }

    def evaluate(self, job, params):
        ranks = list(job.kineto_ranks)
        return [
            self.finding(
                title=f"Rank {r} throws time away",
                message=f"{params.per_rank_ms + r} ms a step",
                evidence={"rank": r, "thrown_ms": params.per_rank_ms + r},
                where=f"rank {r}",
            )
            for r in ranks
        ]
'''

CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
import rules.registry as registry
from thrown_away import ThrownAway
registry.RULES = (*registry.RULES, ThrownAway)   # the one registry line
registry.BY_ID[ThrownAway.id] = ThrownAway

from rules.docs import render as docs_page
from rules.rule_file import render as rule_file
from rules.ruleset import load_ruleset
from stepscope.report.analyze import analyze
from stepscope.report.grouping import groups_of
from stepscope.report.rule_info import rule_pages
from stepscope.render.markdown import render as render_markdown
from stepscope.render.verdict import Verdict

out = {}
out["rule_file"] = "[rules.ThrownAway]\\nper_rank_ms = 1.5" in rule_file()
out["docs"] = "## ThrownAway (stepscope)" in docs_page()
rs = load_ruleset()
out["ruleset"] = rs.params("ThrownAway").per_rank_ms
a = analyze(sys.argv[2], rs, cache_dir=sys.argv[3])
row = next(r for r in a.report.rules if r.rule == "ThrownAway")
out["status"] = row.status
group = next(g for g in groups_of(a.report) if g.rule == "ThrownAway")
out["group"] = [group.count, group.message]
out["markdown"] = "thrown away per step" in render_markdown(a.report, Verdict.of(a.report, "error"))
out["page"] = rule_pages()["ThrownAway"]
print(json.dumps(out))
"""


def test_a_rule_is_one_module_and_one_registry_line(tmp_path: Path) -> None:
    (tmp_path / "thrown_away.py").write_text(textwrap.dedent(RULE_MODULE))
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path), str(SAMPLE), str(tmp_path / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rule_file"] and out["docs"] and out["markdown"], out
    assert out["ruleset"] == 1.5
    assert out["status"] == "fired"
    count, message = out["group"]
    assert (
        count == 2
        and "1.5" in message
        and "2.5" in message
        and "ms thrown away per step" in message
    ), out
    assert out["page"] == "steps"

"""BaselineRegression is a rule like the others: the rule file's severity and enabled apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from tests.support.synthetic import LowGPU, generate_system_metrics


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Job:
    root = tmp_path_factory.mktemp("baseline")
    generate_system_metrics(root / "healthy", nodes=1, gpus=2, cpus=2, minutes=3, seed=1)
    generate_system_metrics(
        root / "slow",
        nodes=1,
        gpus=2,
        cpus=2,
        minutes=3,
        seed=2,
        patterns=[LowGPU(1, None, 0, 180, level=30)],
    )

    def open_job(name: str) -> Job:
        res = ingest(open_source(str(root / name)), cache_dir=root / "cache")
        return Job(res.dataset, res.summary)

    job = open_job("slow")
    job.baseline = open_job("healthy")
    return job


def _results(job: Job, rules: Path | None = None) -> dict[str, object]:
    return {r.rule: r for r in evaluate(job, load_ruleset(rules))}


def test_fires_as_a_warning_by_default(pair: Job) -> None:
    res = _results(pair)["BaselineRegression"]
    assert [f.evidence["metric"] for f in res.findings] == ["gpu_util_p50"]  # type: ignore[attr-defined]
    assert {f.severity for f in res.findings} == {"warning"}  # type: ignore[attr-defined]


def test_severity_override_in_the_rule_file_applies(pair: Job, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules.BaselineRegression]\nseverity = "error"\n')
    res = _results(pair, rules)["BaselineRegression"]
    assert res.findings and {f.severity for f in res.findings} == {"error"}  # type: ignore[attr-defined]


def test_tolerance_and_enabled_from_the_rule_file(pair: Job, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.BaselineRegression]\ngpu_util_points = 90.0\n")
    assert _results(pair, rules)["BaselineRegression"].findings == []  # type: ignore[attr-defined]
    rules.write_text("[rules.BaselineRegression]\nenabled = false\n")
    assert "BaselineRegression" not in _results(pair, rules)


def test_no_baseline_no_row(pair: Job) -> None:
    alone = Job(pair.dataset, pair.summary)
    assert "BaselineRegression" not in _results(alone)

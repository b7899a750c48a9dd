"""report.json is unchanged by refactors: every golden case gives the captured JSON.

The goldens (``tests/golden/``) were captured before issue 10's architecture step; a change
that is meant to alter the report re-captures them (``python -m tests.support.golden --write``)
and says why in its commit.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.support import golden


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("golden")


@pytest.mark.parametrize("name", sorted(p.stem for p in golden.GOLDEN_DIR.glob("*.json")))
def test_report_matches_golden(name: str, work: Path) -> None:
    expected = orjson.loads((golden.GOLDEN_DIR / f"{name}.json").read_bytes())
    available = golden.cases(work)
    if name not in available:
        pytest.skip(f"{name}: needs ../shared/fixtures (or STEPSCOPE_FIXTURES), not found")
    src, base = available[name]
    rc, report = golden.run_report(src, base, work / "out" / name, work / "cache")
    assert rc == expected["exit_code"]
    got = golden.normalise(report, work)
    for key in expected["report"]:  # key by key, so a failure names the part that moved
        assert got.get(key) == expected["report"][key], key
    assert set(got) == set(expected["report"])

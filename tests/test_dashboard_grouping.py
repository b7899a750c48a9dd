"""The Overview says a rule's findings that share a pattern once, as the report does
(issue 14 item 14): on a 12-rank job DataLoaderStall is one line over "all 12 ranks", its
places in numeric order under it, not twelve boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepscope.present.dashboard_options import DashboardOptions
from tests.test_dashboard_apptest import assert_clean, run_app, texts
from tests.test_report_grouping import twelve_rank_job


@pytest.fixture(scope="module")
def job12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return twelve_rank_job(tmp_path_factory.mktemp("dash-groups"))


def test_overview_shows_one_line_per_group_with_its_places(
    monkeypatch: pytest.MonkeyPatch, job12: Path, tmp_path: Path
) -> None:
    at = run_app(monkeypatch, DashboardOptions(str(job12), cache_dir=str(tmp_path)))
    assert_clean(at)
    text = texts(at)
    stall_heads = [m.value for m in at.markdown if "`DataLoaderStall`" in str(m.value)]
    assert len(stall_heads) == 1, stall_heads  # one box, not one per rank
    assert "all 12 ranks" in stall_heads[0]
    assert "share a pattern are one line" in text
    places = next(e for e in at.expander if e.label == "Each of the 12 places")
    table = places.dataframe[0].value
    assert list(table[table.columns[0]]) == [f"rank {r}" for r in range(12)]  # 9 before 10

"""The dashboard's Training health page with Streamlit's AppTest (no browser, no server).

On real health-hook files (``tests/support/health_records.py``): the workers table holds
the report's figures, each training finding's "Show chart" picks its worker and draws its
chart first with the step range shaded, the Overview sends training findings to this page,
and a job without training data says what fills the page.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import data, ui
from rules.ruleset import load_ruleset
from stepscope.present.dashboard_options import DashboardOptions
from stepscope.report.analyze import analyze
from stepscope.report.rule_info import chart_of, training_rule_ids
from stepscope.report.training import CHART_TITLES, NO_DATA_NOTE
from tests.support.health_records import loss, sick_training_job, tensor, write_health

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboards" / "app.py")
PAGE = "views/training.py"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    data.clear()
    yield
    data.clear()


def run_app(monkeypatch: pytest.MonkeyPatch, options: DashboardOptions) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *options.app_args()])
    return AppTest.from_file(APP, default_timeout=180).run()


def texts(at: AppTest) -> str:
    parts = (
        [m.value for m in at.markdown] + [e.value for e in at.info] + [c.value for c in at.caption]
    )
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(v: Any) -> list[float]:
    """A trace's numbers: plotly sends numpy arrays as base64 typed arrays."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).astype(float).tolist()
    return [float(x) for x in v]


def _job(root: Path) -> Path:
    """algo-1 rank 0 healthy; algo-2 rank 1 with a ReLU dead from step 20 and a flat loss."""
    for node, rank, dead_from in (("algo-1", 0, 10_000), ("algo-2", 1, 20)):
        recs: list[dict[str, Any]] = loss(
            range(1, 41), (lambda s: 2.0 / s) if rank == 0 else (lambda s: 0.7)
        )
        for s in range(1, 41):
            recs.append(
                tensor(
                    s, "fc1.weight", "gradient", norm=0.5 / s, numel=4096, nan_count=0, inf_count=0
                )
            )
            recs.append(
                tensor(s, "fc2.weight", "gradient", norm=0.1, numel=256, nan_count=0, inf_count=0)
            )
            recs.append(tensor(s, "fc1.weight", "update_ratio", value=1e-3))
            recs.append(
                tensor(
                    s,
                    "net.1",
                    "activation",
                    module="ReLU",
                    zero_fraction=1.0 if s >= dead_from else 0.4,
                    min=0.0,
                    max=0.0 if s >= dead_from else 2.0,
                    numel=512,
                    nan_count=0,
                    inf_count=0,
                )
            )
        write_health(root, node, rank, recs)
    return root


def test_rules_map_to_the_page() -> None:
    ids = training_rule_ids()
    assert {"LossNotDecreasing", "VanishingGradient", "DeadRelu", "StalledTrainingRule"} <= set(ids)
    assert all(ui.RULE_PAGE[r] == "training" for r in ids)
    assert "training" in {key for key, *_ in ui.PAGES}


def test_page_charts_and_finding_links(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _job(tmp_path / "job")
    rep = analyze(str(root), load_ruleset(), cache_dir=str(tmp_path / "c0")).report
    th = rep.training_health
    assert th is not None
    at = run_app(monkeypatch, DashboardOptions(str(root), cache_dir=str(tmp_path / "cache")))
    assert not at.exception, [e.value for e in at.exception]
    # the Overview sends a training finding to this page
    dead_i = next(i for i, f in enumerate(rep.findings) if f.rule == "DeadRelu")
    goto = [
        b for b in at.button if str(b.key).startswith("goto") and str(b.key).endswith(f"-{dead_i}")
    ]
    assert [b.label for b in goto] == ["Show chart: Training health"]
    goto[0].click().run()  # the Overview's button opens this page
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Training health"]
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert table["worker"].tolist() == [w.worker for w in th.workers]
    assert table["last training loss"].tolist() == pytest.approx([w.last_loss for w in th.workers])
    # the worst finding's worker first; four charts: loss, gradient heatmap, update ratios,
    # activations
    assert at.selectbox(key="training-worker").value == rep.findings[0].evidence["worker"]
    specs = charts(at)
    assert len(specs) == 4 and specs[1]["data"][0]["type"] == "heatmap"
    assert rep.charts.training is not None
    hm = next(
        h
        for h in rep.charts.training.gradient_norms
        if h.worker == at.selectbox(key="training-worker").value
    )
    assert specs[1]["data"][0]["y"] == hm.rows and len(specs[1]["data"][0]["x"]) == len(hm.steps)
    # "Show chart" on the DeadRelu finding: its worker, the activation chart first, steps 20-40
    # shaded
    at.button(key=f"training-goto-{dead_i}").click().run()
    assert not at.exception
    assert at.selectbox(key="training-worker").value == "algo-2 rank 1"
    first = charts(at)[0]
    assert first["layout"]["title"]["text"].startswith(CHART_TITLES[chart_of(rep.findings[dead_i])])
    (shape,) = first["layout"]["shapes"]
    assert (shape["x0"], shape["x1"]) == (19.5, 40.5)
    zeros = next(tr for tr in first["data"] if tr["name"].startswith("net.1"))
    assert max(values(zeros["y"])) == pytest.approx(100.0) and min(
        values(zeros["y"])
    ) == pytest.approx(40.0)
    # the other worker: no shading, every chart in its usual order
    at.selectbox(key="training-worker").set_value("algo-1 rank 0").run()
    assert not at.exception
    assert charts(at)[0]["layout"]["title"]["text"].startswith(CHART_TITLES["loss"])
    assert not charts(at)[0]["layout"].get("shapes")


def test_every_training_rule_on_the_sick_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = sick_training_job(tmp_path / "job")
    at = run_app(monkeypatch, DashboardOptions(str(root), cache_dir=str(tmp_path / "cache")))
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    buttons = [b for b in at.button if str(b.key).startswith("training-goto-")]
    assert len(buttons) >= 9  # one per finding, every training rule fires on this job
    for b in buttons:
        b.click().run()
        assert not at.exception, b.key


def test_no_training_data_says_what_fills_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "job" / "system" / "incremental"
    root.mkdir(parents=True)
    (root / "1700000000.algo-1.json").write_text(
        json.dumps(
            {
                "Type": "cpu",
                "Name": "cpu0",
                "Dimension": "CPUUtilization",
                "Value": 5.0,
                "NodeId": "algo-1",
                "Timestamp": 1_700_000_000.0,
            }
        )
        + "\n"
    )
    at = run_app(
        monkeypatch, DashboardOptions(str(tmp_path / "job"), cache_dir=str(tmp_path / "cache"))
    )
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error
    assert NO_DATA_NOTE in texts(at) and not at.get("plotly_chart")

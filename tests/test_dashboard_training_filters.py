"""The Training health page follows the sidebar's node/rank filters (issue 13), with
Streamlit's AppTest (no browser, no server).

The job is the bundled sample (node algo-1, ranks 0 and 1: the filters' choices) with real
health-hook files for both ranks (workers ``algo-1 rank 0`` and ``algo-1 rank 1``) and a
TensorBoard run (worker ``tb/run1``: its name says no node or rank, so no filter hides it).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import data
from dashboards.filters import Filters, worker_place
from stepscope.present.dashboard_options import DashboardOptions
from tests.support.health_records import loss, tensor, write_health

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboards" / "app.py")
SAMPLE = REPO / "samples" / "sample-job"
PAGE = "views/training.py"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    data.clear()
    yield
    data.clear()


def _health(root: Path, rank: int) -> None:
    recs: list[dict[str, Any]] = loss(range(1, 21), lambda s: 2.0 / s)
    recs += [
        tensor(s, "fc1.weight", "gradient", norm=0.5, numel=256, nan_count=0, inf_count=0)
        for s in range(1, 21)
    ]
    write_health(root, "algo-1", rank, recs)


def _tensorboard_run(root: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(root / "tb" / "run1"))
    for step in range(1, 11):
        value = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / step)
        writer.add_event(
            event_pb2.Event(
                step=step,
                wall_time=1_700_000_000.0 + step,
                summary=summary_pb2.Summary(value=[value]),
            )
        )
    writer.close()


def _job(root: Path, ranks: tuple[int, ...], *, tensorboard: bool) -> Path:
    shutil.copytree(SAMPLE, root)
    for rank in ranks:
        _health(root, rank)
    if tensorboard:
        _tensorboard_run(root)
    return root


def _open(
    monkeypatch: pytest.MonkeyPatch, root: Path, cache: Path, query: dict[str, str]
) -> AppTest:
    options = DashboardOptions(str(root), cache_dir=str(cache))
    monkeypatch.setattr(sys, "argv", ["app.py", *options.app_args()])
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown_workers(at: AppTest) -> tuple[list[str], list[str]]:
    """The worker choice and the workers table's rows."""
    return list(at.selectbox(key="training-worker").options), at.dataframe[0].value[
        "worker"
    ].tolist()


@pytest.mark.parametrize(
    ("name", "place"),
    [
        ("algo-1 rank 0", ("algo-1", 0)),  # stepscope's health hooks
        ("algo-10/rank 12", ("algo-10", 12)),
        ("rank 3", (None, 3)),
        ("worker_0", (None, 0)),  # SageMaker Debugger
        ("algo-2_worker_5", ("algo-2", 5)),
        ("tb/run1", (None, None)),  # a TensorBoard run
        ("algo-2", ("algo-2", None)),  # a run named after its host
    ],
)
def test_worker_names_give_node_and_rank(name: str, place: tuple[str | None, int | None]) -> None:
    assert worker_place(name, {"algo-1", "algo-2"}) == place


def test_worker_list_narrows_to_the_chosen_nodes_and_ranks() -> None:
    workers = ["algo-1 rank 0", "algo-2 rank 1", "worker_2", "tb/run1"]
    rank_node: dict[int, str | None] = {0: "algo-1", 1: "algo-2", 2: "algo-2"}
    assert Filters().worker_list(workers, rank_node) == workers
    assert Filters(ranks=(1,)).worker_list(workers, rank_node) == ["algo-2 rank 1", "tb/run1"]
    # worker_2's node comes from its rank
    assert Filters(nodes=("algo-2",)).worker_list(workers, rank_node) == [
        "algo-2 rank 1",
        "worker_2",
        "tb/run1",
    ]
    assert Filters(nodes=("algo-1",), ranks=(1,)).worker_list(workers, rank_node) == ["tb/run1"]


def test_the_page_shows_the_chosen_ranks_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = _job(tmp_path / "job", (0, 1), tensorboard=True)
    at = _open(monkeypatch, root, tmp_path / "c", {})
    assert _shown_workers(at) == (["algo-1 rank 0", "algo-1 rank 1", "tb/run1"],) * 2
    at = _open(monkeypatch, root, tmp_path / "c", {"rank": "1"})
    options, table = _shown_workers(at)
    assert options == table == ["algo-1 rank 1", "tb/run1"]
    assert at.selectbox(key="training-worker").value in options
    assert any("2 of 3 workers" in str(c.value) for c in at.caption)
    # the node filter: both ranks are on algo-1, so choosing it hides nobody
    at = _open(monkeypatch, root, tmp_path / "c", {"node": "algo-1", "rank": "0"})
    assert _shown_workers(at) == (["algo-1 rank 0", "tb/run1"],) * 2
    # the sidebar, mid-session: the chosen worker is filtered away, a visible one takes its place
    at = _open(monkeypatch, root, tmp_path / "c", {})
    at.selectbox(key="training-worker").set_value("algo-1 rank 1").run()
    at.multiselect(key="flt_ranks").set_value([0]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert _shown_workers(at) == (["algo-1 rank 0", "tb/run1"],) * 2
    assert at.selectbox(key="training-worker").value == "algo-1 rank 0"
    titles = [str(c["layout"]["title"]["text"]) for c in _charts(at)]
    assert titles and all(t.endswith(": algo-1 rank 0") or "algo-1 rank 0 " in t for t in titles), (
        titles
    )


def _charts(at: AppTest) -> list[dict[str, Any]]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_the_page_says_when_the_filters_hide_every_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = _job(tmp_path / "job", (0,), tensorboard=False)
    at = _open(monkeypatch, root, tmp_path / "c", {"rank": "1"})
    assert not at.selectbox, "no worker to choose"
    assert not at.get("plotly_chart")
    (info,) = [i.value for i in at.info]
    assert "hide every worker" in info and "algo-1 rank 0" in info and "ranks 1" in info

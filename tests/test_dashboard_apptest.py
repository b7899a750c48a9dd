"""Page logic of the dashboard with Streamlit's AppTest (no browser, no server).

Each page renders without an exception on the bundled sample job (CPU, 2 ranks) and on a
generated GPU job (system metrics); filters come from and go to the URL; bad input (an
unknown job name, no credentials, an empty folder, a bad rule file) is an ``st.error``
line, never an exception. Also the report cache, the binned series and the CLI command object.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from analyzer.analyses import summary
from analyzer.errors import StepscopeError
from dashboards import data, downsample, ui
from stepscope.present.dashboard_options import DashboardOptions

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboards" / "app.py")
SAMPLE = REPO / "samples" / "sample-job"
BASELINE = REPO / "samples" / "sample-baseline"  # the sample with nothing injected
PAGES = [
    "views/system.py",
    "views/steps.py",
    "views/communication.py",
    "views/kernels.py",
    "views/compare.py",
]


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    data.clear()
    yield
    data.clear()


def run_app(
    monkeypatch: pytest.MonkeyPatch,
    options: DashboardOptions | None = None,
    query: dict[str, str | list[str]] | None = None,
) -> AppTest:
    """The app as the server child runs it: started with ``stepscope dashboard``'s options
    (none: started by hand without them)."""
    monkeypatch.setattr(
        sys, "argv", ["app.py", *(options.app_args() if options is not None else [])]
    )
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest) -> str:
    parts = (
        [m.value for m in at.markdown] + [e.value for e in at.error] + [e.value for e in at.info]
    )
    parts += [c.value for c in at.caption] + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def qp(at: AppTest, key: str) -> list[str]:
    v = at.query_params.get(key)
    return [] if v is None else [v] if isinstance(v, str) else list(v)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def gpu_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpujob") / "job"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.synthetic",
            str(out),
            "--nodes",
            "2",
            "--gpus",
            "4",
            "--cpus",
            "8",
            "--minutes",
            "20",
            "--low-gpu",
            "2:1:300:900",
            "--cpu-bottleneck",
            "1:600:1000",
        ],
        check=True,
        capture_output=True,
    )
    return out


# --------------------------------------------------------------------------- pages


def test_sample_job_every_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    assert_clean(at)
    body = texts(at)
    assert "DataLoaderStall" in body and "StragglerRank" in body
    assert "Rank 1 holds the others back" in body
    assert at.title[0].value == "sample-job"
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert not at.error, [e.value for e in at.error]
    at.switch_page("views/steps.py").run()
    assert "8 steps on 1 rank" not in texts(at) and "16 steps on 2 rank(s)" in texts(at)
    # outliers are StepOutlier's verdict: on 8 steps per rank it cannot judge, so none is marked
    assert "0 outlier(s) marked" in texts(at) and "StepOutlier could not judge" in texts(at)
    assert "Memory held at each step's start" in [
        h.value for h in at.subheader
    ]  # real profiler memory events
    assert "One step, every rank" in [h.value for h in at.subheader]
    at.select_slider(key="steps-pick").set_value(5).run()
    assert_clean(at)
    assert any("straggler's extra work" in str(c.value) for c in at.caption)
    at.switch_page("views/communication.py").run()  # the stragglers are StragglerRank's findings
    table = next(
        d.value
        for d in at.dataframe
        if "others' wait per such step, in total (ms)" in d.value.columns
    )
    assert table["rank"].tolist() == [1] and "Straggler rank(s): 1" in at.warning[0].value
    # step by step: rank 1 every profiled step, for the unprofiled time it slept
    steps = next(d.value for d in at.dataframe if "the rank they waited for" in d.value.columns)
    assert steps["step"].tolist() == list(range(2, 10))
    assert set(steps["the rank they waited for"]) == {1}
    assert set(steps["what it did more"]) == {"unprofiled time"}


def test_a_hang_leads_the_overview_with_where_each_rank_stands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 22: the hang first, with the per-rank table of where each rank stands."""
    from tests.support import hang_dumps

    root = tmp_path / "job"
    tail_0 = [hang_dumps.entry(12, "0", 7), hang_dumps.entry(13, "1", 7)]
    tail_1 = [hang_dumps.entry(12, "0", 7), hang_dumps.entry(13, "0", 8)]
    hang_dumps.dump(root, 0, hang_dumps.history() + tail_0, {"0": (7, 7), "1": (7, 6)}, 54, "x")
    hang_dumps.dump(
        root, 1, hang_dumps.history() + tail_1, {"0": (8, 7), "1": (6, 6)}, 47, "loss.backward()"
    )
    at = run_app(monkeypatch, DashboardOptions(str(root), cache_dir=str(tmp_path / "cache")))
    assert_clean(at)
    first = next(m.value for m in at.markdown if "`CollectiveHang`" in m.value)
    assert "Rank 1 never entered gloo:all_reduce #7 of process group 1" in first
    assert any("Where each rank stands" in str(c.value) for c in at.caption)
    table = next(d.value for d in at.dataframe if "in collective" in " ".join(d.value.columns))
    assert table["rank"].tolist() == [0, 1]


def test_gpu_job_every_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpu_job: Path) -> None:
    at = run_app(monkeypatch, DashboardOptions(str(gpu_job), cache_dir=str(tmp_path)))
    assert_clean(at)
    assert at.metric[4].label == "GPU utilization p50" and at.metric[4].value != "—"
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
    at.switch_page("views/system.py").run()
    assert "GPU utilization" in texts(at) or at.get("plotly_chart")
    assert len(at.get("plotly_chart")) >= 4  # CPU, GPU, GPU memory, I/O wait (+ heatmap)


def test_gpu_kernels_on_kineto_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support.fixtures import fixtures_dir

    src = fixtures_dir("kineto", "nccl_2rank_rank0")
    at = run_app(monkeypatch, DashboardOptions(str(src), cache_dir=str(tmp_path)))
    assert_clean(at)
    at.switch_page("views/kernels.py").run()
    assert_clean(at)
    assert (
        len(at.get("plotly_chart")) >= 4 and at.dataframe
    )  # types, idle breakdown, labels, top kernels
    assert any("host wait" in str(c.value) or "idle" in str(c.value) for c in at.caption)
    launches = [d.value for d in at.dataframe if "queue delay, mean (µs)" in d.value.columns]
    assert (
        launches and int(launches[0]["launches"].iloc[0]) == 2516
    )  # HTA counts 2516 on this trace
    at.switch_page("views/communication.py").run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) >= 2 and "allreduce" in at.dataframe[-1].value.to_string()


def test_rank_filter_from_url_and_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(
        monkeypatch,
        DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)),
        query={"rank": "1", "node": "nope"},
    )
    assert_clean(at)
    ranks = at.sidebar.multiselect[1]
    assert ranks.value == [1]
    assert at.sidebar.multiselect[0].value == []  # unknown node dropped
    body = texts(at)
    assert "Rank 1 waits for data" in body and "Rank 0 waits for data" not in body
    assert "hidden by the node/rank filters" in body
    assert qp(at, "rank") == ["1"]
    assert "node" not in at.query_params

    at.switch_page("views/steps.py").run()
    assert "8 steps on 1 rank(s)" in texts(at)
    ranks = at.sidebar.multiselect[1]
    ranks.set_value([0, 1]).run()
    assert sorted(qp(at, "rank")) == ["0", "1"]
    assert "16 steps on 2 rank(s)" in texts(at)


def test_time_window_from_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(
        monkeypatch,
        DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)),
        query={"from": "9.0", "to": "9.2"},
    )
    assert_clean(at)
    lo, hi = at.sidebar.slider[0].value
    assert (lo, hi) == (9.0, 9.2)
    at.switch_page("views/steps.py").run()
    assert_clean(at)
    assert "16 steps" not in texts(at)


def test_finding_button_focuses_and_switches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    btn = next(b for b in at.button if b.label.startswith("Show chart: Communication"))
    btn.click().run()
    assert_clean(at)
    assert at.sidebar.multiselect[1].value == [1]
    assert at.title[0].value == "Communication"


def test_compare_against_baseline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(
        monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path), baseline=str(SAMPLE))
    )
    at.switch_page("views/compare.py").run()
    assert_clean(at)
    assert any("No regression" in s.value for s in at.success)
    at.text_input[0].set_value(str(tmp_path / "missing")).run()
    assert_clean(at)
    assert any("Cannot open the baseline" in e.value for e in at.error)


def test_compare_the_sample_against_its_shipped_baseline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What ``make dashboard`` shows on Compare: the sample against the same job run with
    nothing injected regresses in step time, throughput and data-loader stall share."""
    at = run_app(
        monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path), baseline=str(BASELINE))
    )
    assert_clean(at)
    assert "BaselineRegression" in texts(at)
    at.switch_page("views/compare.py").run()
    assert_clean(at)
    (verdict,) = at.error
    assert verdict.value.startswith("3 metric(s) regressed against sample-baseline")
    table = next(d.value for d in at.dataframe if "regressed" in d.value.columns)
    assert table.set_index("metric")["regressed"].to_dict() == {
        "mean step time (ms)": True,
        "throughput (steps/s)": True,
        "data-loader stall share (%)": True,
    }
    # shares move in points (as report.md says it), times and rates in %; no internal codes
    changes = table.set_index("metric")["change"].to_dict()
    assert changes["data-loader stall share (%)"].endswith(" points")
    assert changes["mean step time (ms)"].endswith("%")
    text = table.astype(str).to_string()
    assert not any(code in text for code in ("pct_up", "pct_down", "points_up", "points_down"))
    assert "at most +5 points" in set(table["tolerance"])
    per_rank = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert sorted(set(zip(per_rank["run"], per_rank["rank"], strict=True))) == [
        ("baseline", 0),
        ("baseline", 1),
        ("this run", 0),
        ("this run", 1),
    ]


def test_compare_against_a_baseline_typed_in_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A baseline chosen on the page: the report is built again against it (one call, the
    job's dataset reused), and the page reads the comparison from that report."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    at.switch_page("views/compare.py").run()
    assert_clean(at)
    assert any("no baseline is given yet" in i.value for i in at.info)
    at.text_input[0].set_value(str(SAMPLE)).run()
    assert_clean(at)
    assert any("No regression against sample-job" in s.value for s in at.success)
    main = data.loaded(data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path)))
    compared = data.loaded(
        data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path), baseline=str(SAMPLE))
    )
    assert main is not None and compared is not None and main.report.baseline is None
    assert compared.job.dataset is main.job.dataset  # judged again, not read again
    assert compared.report.baseline is not None and compared.report.baseline.comparisons


def test_sagemaker_rule_reports_beside_stepscope(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SageMaker's rule outputs in the job folder show on the Overview beside stepscope's
    verdict."""
    import json
    import shutil

    job = tmp_path / "job"
    shutil.copytree(SAMPLE, job)
    reports = job / "rule-output" / "ProfilerReport" / "profiler-output" / "profiler-reports"
    reports.mkdir(parents=True)
    (reports / "MaxInitializationTime.json").write_text(
        json.dumps({"RuleTriggered": 1, "Violations": 1, "Datapoints": 1})
    )
    at = run_app(monkeypatch, DashboardOptions(str(job), cache_dir=str(tmp_path / "c")))
    assert_clean(at)
    labels = [e.label for e in at.expander]
    assert any("SageMaker's own rule reports vs stepscope (1 differ)" in lab for lab in labels), (
        labels
    )
    table = next(d.value for d in at.dataframe if "agree" in d.value.columns)
    row = table[table["rule"] == "MaxInitializationTime"].iloc[0]
    assert row["SageMaker"] == "triggered" and row["stepscope"] == "passed" and row["agree"] == "no"


# --------------------------------------------------------------------------- bad input


def test_empty_folder_is_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    at = run_app(monkeypatch, DashboardOptions(str(empty), cache_dir=str(tmp_path / "c")))
    assert_clean(at)
    assert at.error and "no files found" in at.error[0].value


def test_a_source_with_no_profiler_data_says_so_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No verdict without data: only a damaged trace and an unknown file, so every page
    starts with the one line that says what was found and skipped."""
    src = tmp_path / "job"
    src.mkdir()
    (src / "x.pt.trace.json").write_text("garbage")
    (src / "run.xplane.pb").write_bytes(b"\x08\x01")
    at = run_app(monkeypatch, DashboardOptions(str(src), cache_dir=str(tmp_path / "c")))
    assert not at.exception, [e.value for e in at.exception]
    msg = at.error[0].value
    assert f"no profiler data in {src}" in msg and "1 skipped" in msg and "run.xplane.pb" in msg


def test_missing_folder_and_bad_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = run_app(
        monkeypatch, DashboardOptions(str(tmp_path / "nope"), cache_dir=str(tmp_path / "c"))
    )
    assert_clean(at)
    assert at.error and "Cannot open" in at.error[0].value
    bad = tmp_path / "rules.toml"
    bad.write_text("[rules.NoSuchRule]\nx = 1\n")
    at = run_app(
        monkeypatch,
        DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path / "c"), rules_file=str(bad)),
    )
    assert_clean(at)
    assert at.error


def test_no_source_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_app(monkeypatch)
    assert_clean(at)
    assert at.error and "no SOURCE" in at.error[0].value


def test_unknown_job_name_is_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_endpoint: object
) -> None:
    at = run_app(monkeypatch, DashboardOptions("no-such-training-job", cache_dir=str(tmp_path)))
    assert_clean(at)
    assert at.error, texts(at)
    assert "no-such-training-job" in at.error[0].value


def test_no_credentials_is_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aws_env: Path
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    at = run_app(monkeypatch, DashboardOptions("some-training-job", cache_dir=str(tmp_path)))
    assert_clean(at)
    assert at.error, texts(at)
    assert "credential" in at.error[0].value.lower()


# --------------------------------------------------------------------------- data layer


def test_report_is_cached_by_fingerprint_and_rules(tmp_path: Path) -> None:
    cfg = data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path))
    job = data.load_job(cfg)
    assert not job.report_from_cache
    assert data.load_job(cfg) is job  # in memory
    data.clear()
    again = data.load_job(cfg)
    assert (
        again.report_from_cache and again.report == job.report
    )  # the whole typed report round-trips
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.DataLoaderStall]\nthreshold_pct = 90\n")
    data.clear()
    other = data.load_job(
        data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path), rules_file=str(rules))
    )
    assert not other.report_from_cache
    assert "DataLoaderStall" not in {f.rule for f in other.report.findings}


def test_refresh_generation_reloads(tmp_path: Path) -> None:
    cfg = data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path))
    job = data.load_job(cfg)
    data.bump_generation(cfg)
    assert data.loaded(cfg) is None and data.latest(cfg) is job
    new = data.load_job(cfg)
    assert new is not job and new.key == job.key and new.report_from_cache


def test_args_round_trip() -> None:
    """What ``stepscope dashboard`` passes on is what the app reads back: one typed object."""
    from stepscope.present.dashboard_options import DashboardOptions

    opts = DashboardOptions(
        "s3://b/p", "/c", "r.toml", "prof", "eu-west-1", "base", 5.0, "dask://h:1"
    )
    assert data.parse_args(opts.app_args()) == opts
    assert data.parse_args(DashboardOptions("job").app_args()) == data.AppConfig("job")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no SOURCE given"),
        (["--options", "{"], "not JSON"),
        (["--options", '{"source": "j", "colour": "red"}'], "unknown dashboard option(s): colour"),
        (["--options", '{"source": "j", "refresh_s": "soon"}'], "expected seconds"),
        (["--options", '{"source": 3}'], "no SOURCE given"),
    ],
)
def test_bad_app_arguments_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(StepscopeError, match=re.escape(message)):
        data.parse_args(argv)


def test_downsampling_bounds_points_and_keeps_extremes() -> None:
    n = 1_000_000
    t = np.arange(n, dtype=float) * 0.01
    v = np.zeros(n)
    v[123_456] = 100.0
    table = pa.table(
        {
            "node": pa.array(["algo-1"] * n).dictionary_encode(),
            "device": pa.array(["gpu0", "gpu1"] * (n // 2)).dictionary_encode(),
            "dimension": pa.array(["GPUUtilization"] * n).dictionary_encode(),
            "timestamp": pa.array((t * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            "value": v,
        }
    )
    df = summary.system_series(table, "GPUUtilization", max_points=500)
    assert len(df) <= 2 * 500 and set(df["device"]) == {"gpu0", "gpu1"}
    assert df["max"].max() == 100.0 and df["n"].sum() == n
    node = summary.system_series(table, "GPUUtilization", per="node")
    assert len(node) <= downsample.MAX_POINTS and set(node["device"]) == {"all"}
    win = summary.system_series(table, "GPUUtilization", window=(100.0, 200.0), nodes=["algo-1"])
    assert win["t"].min() >= 100.0 and win["t"].max() <= 200.0
    assert summary.system_series(table, "GPUUtilization", nodes=["algo-9"]).empty
    xy = downsample.xy_series(t, v, 1000)
    assert len(xy) <= 1000 and xy["max"].max() == 100.0


# --------------------------------------------------------------------------- CLI command object


def test_cli_help_and_bad_rules(tmp_path: Path) -> None:
    from stepscope.cli.dashboard import dashboard_command, server_command

    res = CliRunner().invoke(dashboard_command, ["--help"])
    assert res.exit_code == 0 and "--port" in res.output and "--host" in res.output
    res = CliRunner().invoke(
        dashboard_command, [str(SAMPLE), "--rules", str(tmp_path / "missing.toml")]
    )
    assert res.exit_code == 2 and "stepscope: error:" in res.output
    cmd = server_command("127.0.0.1", 8599, ["SRC", "--cache", "C"])
    assert cmd[1:3] == ["-m", "dashboards.serve"] and "--server.headless" in cmd
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[-3:] == [
        "SRC",
        "--cache",
        "C",
    ]


def test_cli_busy_port_picks_another() -> None:
    import socket

    from stepscope.cli.dashboard import free_port, port_is_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert not port_is_free("127.0.0.1", busy)
        assert free_port("127.0.0.1") != busy


def test_every_rule_links_to_a_page() -> None:
    """Each finding's "Show chart" button needs the page that shows its rule."""
    from dashboards import ui
    from rules.ruleset import CATALOG

    pages = {p.stem for p in (Path(ui.__file__).parent / "views").glob("*.py")} | {"overview"}
    assert set(CATALOG) <= set(ui.RULE_PAGE), set(CATALOG) - set(ui.RULE_PAGE)
    assert set(ui.RULE_PAGE.values()) <= pages


# --------------------------------------------------------------------------- what a newcomer reads


def figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """The page's plotly figures (the JSON the browser gets), by chart key."""
    from streamlit.runtime.state.common import user_key_from_element_id

    return {
        str(user_key_from_element_id(c.proto.id)): json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
    }


def displayed(at: AppTest) -> list[pd.DataFrame]:
    """Each table as the browser shows it (the formatter's display values)."""
    from streamlit import dataframe_util

    return [
        dataframe_util.convert_arrow_bytes_to_pandas_df(d.proto.arrow_data.styler.display_values)
        if d.proto.arrow_data.HasField("styler")
        else d.value
        for d in at.dataframe
    ]


def values(v: Any) -> list[Any]:
    """A figure's array: plotly sends numpy arrays as typed base64 (``{"dtype", "bdata"}``)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def title_of(fig: dict[str, Any]) -> str:
    t = fig["layout"].get("title") or {}
    return str(t.get("text", "")) if isinstance(t, dict) else str(t)


RED = {"#d62728", "#e45756", "#ff2b2b", "#ef553b", "red"}


def check_page_text(at: AppTest) -> None:
    """Tables: headings in words, no "None"/"nan" cells, no column empty in every row;
    charts: no "points after downsampling" titles, data loading never in alarm red."""
    for table in displayed(at):
        for col in table.columns:
            assert "_" not in str(col), col
            cells = table[col].astype(str)
            assert not cells.isin(["None", "nan", "NaN", "<NA>"]).any(), (col, cells.tolist())
            assert not cells.eq("–").all() or len(cells) == 0, f"empty column {col}"
    for key, fig in figures(at).items():
        assert "downsampling" not in title_of(fig), (key, title_of(fig))
        for tr in fig["data"]:
            if "data loading" in str(tr.get("name", "")):
                assert str((tr.get("marker") or {}).get("color", "")).lower() not in RED, (
                    key,
                    tr["name"],
                )


def test_overview_shows_where_each_ranks_step_time_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Item 10: the sample's Overview stacks each rank's mean step into compute,
    communication and data loading (the step-breakdown analysis), ranks in order."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    assert_clean(at)
    fig = figures(at)["ov-rank-parts"]
    names = [tr["name"] for tr in fig["data"]]
    assert names[:3] == [
        "compute (own work)",
        "communication (incl. waiting)",
        "data loading",
    ]  # (+ idle)
    assert fig["data"][0]["y"] == ["rank 0", "rank 1"] and fig["layout"]["barmode"] == "stack"
    report = data.loaded(data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path)))
    assert report is not None
    bd = report.report.charts.step_breakdown.frame()
    want = bd[bd["rank"] == 1]["dataloader_ms"].mean()
    assert values(fig["data"][2]["x"])[1] == pytest.approx(
        want
    )  # the analysis' figure, not a page's own
    assert "Where the time goes" in [h.value for h in at.subheader]
    check_page_text(at)
    # the Show-chart buttons carry the page's whole name, not a cut one
    assert {b.label for b in at.button if b.label.startswith("Show chart")} >= {
        "Show chart: Steps and data loading",
        "Show chart: Communication",
    }


def test_overview_splits_own_work_into_compute_and_idle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Item 10's idle part: own work = compute + idle (no profiled event runs), from the
    step-breakdown analysis' ``idle_ms``; the sample's straggler sleeps ~40 ms a step."""
    from stepscope.report.model import StepBreakdown

    if "idle_ms" not in StepBreakdown.model_fields:
        pytest.skip("the report's StepBreakdown carries no idle_ms yet (stepscope/report/model.py)")
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    assert_clean(at)
    fig = figures(at)["ov-rank-parts"]
    assert [tr["name"] for tr in fig["data"]] == [
        "compute (own work)",
        "communication (incl. waiting)",
        "data loading",
        "idle (no profiled event)",
    ]
    report = data.loaded(data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path)))
    assert report is not None
    per = report.report.charts.step_breakdown.frame().groupby("rank")[["busy_ms", "idle_ms"]].mean()
    compute, idle = values(fig["data"][0]["x"]), values(fig["data"][3]["x"])
    assert idle == pytest.approx(per["idle_ms"].tolist())
    assert [c + i for c, i in zip(compute, idle, strict=True)] == pytest.approx(
        per["busy_ms"].tolist()
    )
    assert idle[1] > 35 > idle[0]  # rank 1's injected sleep
    assert fig["data"][3]["marker"]["color"] == ui.PART_COLORS["idle"]


def test_overview_heatmap_and_system_page_on_a_gpu_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpu_job: Path
) -> None:
    """Items 10 and 13 on a 2-node x 4-GPU job with one low GPU: the Overview has the node x
    GPU heatmap; the System page leads with it, draws one line per node (the spread of its
    GPUs as a band) until asked for per-device lines, and names the rules' windows in the
    legend instead of printing their labels over each other."""
    at = run_app(monkeypatch, DashboardOptions(str(gpu_job), cache_dir=str(tmp_path)))
    assert_clean(at)
    hm = figures(at)["ov-heatmap"]
    assert hm["data"][0]["type"] == "heatmap"
    assert hm["data"][0]["y"] == [f"algo-{n} gpu{g}" for n in (1, 2) for g in range(4)]
    check_page_text(at)

    at.switch_page("views/system.py").run()
    assert_clean(at)
    figs = figures(at)
    assert next(iter(figs)) == "sys-heatmap"
    gpu = figs["sys-GPUUtilization"]
    lines = [
        tr["name"] for tr in gpu["data"] if tr.get("showlegend") is not False and not tr.get("fill")
    ]
    assert lines == ["algo-1", "algo-2"], lines
    windows = [tr["name"] for tr in gpu["data"] if tr.get("fill") == "toself"]
    assert windows and all(w.startswith("LowGPUUtilization") for w in windows), windows
    assert any("algo-2" in w and "gpu1" in w for w in windows), windows
    assert not gpu["layout"].get("annotations"), gpu["layout"].get("annotations")
    assert all(not f["layout"].get("annotations") for f in figs.values())
    check_page_text(at)
    node_table = next(d.value for d in at.dataframe if "node" in d.value.columns)
    assert "CPU p95 (%)" in node_table.columns

    at.toggle[0].set_value(True).run()  # GPU lines per device
    assert_clean(at)
    gpu = figures(at)["sys-GPUUtilization"]
    lines = [
        tr["name"] for tr in gpu["data"] if tr.get("showlegend") is not False and not tr.get("fill")
    ]
    assert lines == [f"algo-{n} gpu{g}" for n in (1, 2) for g in range(4)], lines


def test_nodes_in_natural_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Item 14: algo-2 before algo-10 in the filter, the heatmaps, the charts and the tables."""
    job = tmp_path / "job"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.synthetic",
            str(job),
            "--nodes",
            "11",
            "--gpus",
            "1",
            "--cpus",
            "2",
            "--minutes",
            "1",
            "--interval",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    at = run_app(monkeypatch, DashboardOptions(str(job), cache_dir=str(tmp_path / "c")))
    assert_clean(at)
    want = [f"algo-{n}" for n in range(1, 12)]
    assert list(at.sidebar.multiselect[0].options) == want
    assert [r.split()[0] for r in figures(at)["ov-heatmap"]["data"][0]["y"]] == want
    at.switch_page("views/system.py").run()
    assert_clean(at)
    figs = figures(at)
    assert [r.split()[0] for r in figs["sys-heatmap"]["data"][0]["y"]] == want
    cpu = [
        tr["name"] for tr in figs["sys-CPUUtilization"]["data"] if tr.get("showlegend") is not False
    ]
    assert cpu == want
    assert next(d.value for d in at.dataframe if "node" in d.value.columns)["node"].tolist() == want


def test_sample_pages_read_well(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Item 11 on every page of the sample; item 12: Kernels says what data fills it, Compare
    without a baseline says how to pass one and names the shipped samples/sample-baseline."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        check_page_text(at)

    at.switch_page("views/steps.py").run()
    hist = figures(at)["steps-hist"]
    assert len(values(hist["data"][0]["x"])) <= 10  # 16 steps: a few bins, not a barcode of 60
    assert hist["layout"]["yaxis"]["dtick"] == 1 and hist["layout"]["yaxis"]["tickformat"] == ",d"
    stats = next(d.value for d in at.dataframe if "median (ms)" in d.value.columns)
    assert stats["rank"].tolist() == [0, 1] and list(stats.columns) == [
        "rank",
        "steps",
        "mean (ms)",
        "median (ms)",
        "p95 (ms)",
        "std dev (ms)",
        "steps/s",
    ]
    lanes = set(figures(at)["steps-timeline"]["layout"]["yaxis"]["categoryarray"])
    assert "rank 0 · thread 1" in lanes and not any("CPU" in lane for lane in lanes), lanes
    assert any("nested 1" in str(c.value) and "thread 1" in str(c.value) for c in at.caption)

    at.switch_page("views/communication.py").run()
    coll = next(d.value for d in at.dataframe if "collective" in d.value.columns)
    assert "mean (ms)" in coll.columns and not {
        "algorithm bandwidth (GB/s)",
        "bus bandwidth (GB/s)",
    } & set(coll.columns)

    at.switch_page("views/kernels.py").run()
    body = texts(at)
    assert "fills from a GPU trace" in body and "ProfilerActivity.CUDA" in body

    at.switch_page("views/compare.py").run()
    assert_clean(at)
    (box,) = at.sidebar.text_input
    assert "samples/sample-baseline" in box.placeholder and "sample-job" not in box.placeholder
    body = texts(at)
    assert "--baseline" in body and "sidebar" in body and "samples/sample-baseline" in body


def test_histogram_bins_follow_the_data() -> None:
    rng = np.random.default_rng(0)
    edges, _ = downsample.histogram({"a": rng.normal(110, 10, 16)})
    assert downsample.MIN_BINS <= len(edges) - 1 <= 10
    edges, _ = downsample.histogram({"a": rng.normal(110, 10, 200_000)})
    assert len(edges) - 1 == downsample.MAX_BINS


def test_evidence_reads_as_a_table_of_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Overview shows each finding's evidence as a small table (figure, value), never as
    raw JSON."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    assert_clean(at)
    assert len(at.json) == 0
    evidence = [d.value for d in at.dataframe if list(d.value.columns) == ["figure", "value"]]
    assert evidence, [list(d.value.columns) for d in at.dataframe]
    figures = {f for table in evidence for f in table["figure"]}
    assert "mean wait ms" in figures and "rank" in figures


def test_the_system_page_shows_no_gpu_control_on_a_job_without_gpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The sample is a CPU job: the System page has the per-core toggle, not the per-GPU one."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    at.switch_page("views/system.py").run()
    assert_clean(at)
    labels = [t.label for t in at.toggle]
    assert "CPU lines per core" in labels and "GPU lines per device" not in labels


def test_communication_page_shows_the_steps_critical_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The sample's 2 ranks: the selected step's critical path across ranks runs on rank 1,
    the rank the others wait for, and the page says what would shorten the step."""
    at = run_app(monkeypatch, DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path)))
    at.switch_page("views/communication.py").run()
    assert_clean(at)
    assert "The chain of dependent work that sets the step's length" in texts(at)
    from analyzer.job import Job
    from analyzer.sources import open_source

    job = Job.open(open_source(str(SAMPLE)), cache_dir=str(tmp_path))
    step = int(at.selectbox(key="comm-export-step").value)
    comp = job.cross_rank_critical_path(step).composition
    assert comp.groupby("rank")["ns"].sum().idxmax() == 1, comp

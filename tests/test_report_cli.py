"""``stepscope report`` end to end: files, exit codes, the JSON contract, JUnit, escaping,
baseline."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from markdown_it import MarkdownIt

from stepscope.report.palette import rank_color

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepscope", *args], capture_output=True, text=True, timeout=300
    )


def _counted(doc: dict[str, object]) -> str:
    """What every output says of report.json's findings: as listed (one per group), their
    places, then per severity (the groups'), e.g. "2 findings (3 places): 2 errors, ..."."""
    groups = doc["finding_groups"]
    findings = doc["findings"]
    assert isinstance(groups, list) and isinstance(findings, list)
    by = {s: sum(1 for g in groups if g["severity"] == s) for s in ("error", "warning", "info")}

    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    head = n(len(groups), "finding")
    if len(findings) != len(groups):
        head += f" ({n(len(findings), 'place')})"
    return f"{head}: {n(by['error'], 'error')}, {n(by['warning'], 'warning')}, {by['info']} info"


@pytest.fixture(scope="module")
def sample_report(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("report")
    proc = run("report", str(SAMPLE), "--out", str(out), "--cache", str(out / "cache"))
    return proc, out


def test_writes_all_four_files_and_fails_on_error(sample_report) -> None:
    proc, out = sample_report
    assert proc.returncode == 1, proc.stderr
    for name in ("report.md", "report.html", "report.json", "report.junit.xml"):
        assert (out / name).stat().st_size > 0
    assert "Traceback" not in proc.stderr
    # the CI log names what fired: one line per finding, then the verdict (counts from the report)
    doc = json.loads((out / "report.json").read_text())
    counts, findings = doc["summary"]["counts"], doc["findings"]
    lines = proc.stderr.strip().splitlines()
    assert counts["error"] >= 2 and len(findings) < 20
    assert lines[-1].startswith(f"FAIL: {_counted(doc)} (--fail-on error)")
    assert "(--fail-on error) — wrote " in lines[-1]
    # one line per group of findings (both ranks' DataLoaderStall once), its place said once
    groups = doc["finding_groups"]
    assert len(groups) < len(findings)
    # then what the findings cost (docs/cli-report.md#what-findings-cost), then the verdict
    assert lines[-2].startswith("Findings lose ") and "profiled window" in lines[-2]
    assert [ln.split()[:2] for ln in lines[:-2]] == [[g["severity"], g["rule"]] for g in groups]
    stall = next(ln for ln in lines if "DataLoaderStall" in ln)
    assert stall.split("DataLoaderStall")[1].strip().startswith("both ranks: ")
    straggler = next(ln for ln in lines if "StragglerRank" in ln)
    assert (
        straggler.split("StragglerRank")[1].strip().startswith("rank 1 on algo-1: arrives last")
    )  # its message, the place said once
    assert "rank 1: Rank 1" not in proc.stderr and "rank 0: rank 0" not in proc.stderr


def test_json_contract(sample_report) -> None:
    _proc, out = sample_report
    doc = json.loads((out / "report.json").read_text())
    assert {"job", "findings", "metrics", "rules", "summary"} <= doc.keys()
    for f in doc["findings"]:
        assert {"rule", "severity", "title", "evidence", "recommendation"} <= f.keys()
        assert f["severity"] in ("error", "warning", "info")
    ranks = doc["metrics"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    for r in ranks:
        assert {
            "rank",
            "comm_comp_overlap_pct",
            "temporal_pct",
            "kernel_share_pct",
            "idle_breakdown_pct",
            "kernel_launches",
            "gpu_annotations",
            "allocator_memory",
        } <= r.keys()
    assert {f["rule"] for f in doc["findings"]} >= {"DataLoaderStall", "StragglerRank"}


def test_junit_has_one_case_per_rule(sample_report) -> None:
    _proc, out = sample_report
    doc = json.loads((out / "report.json").read_text())
    root = ET.parse(out / "report.junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert sorted(str(c.get("name")) for c in cases) == sorted(r["rule"] for r in doc["rules"])
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"DataLoaderStall", "StragglerRank"}


def test_html_is_self_contained(sample_report) -> None:
    _proc, out = sample_report
    html = (out / "report.html").read_text()
    assert "<script src=" not in html  # plotly.js inlined, nothing fetched
    assert "Plotly.newPlot" in html or "plotly" in html.lower()


@pytest.mark.parametrize(
    ("fail_on", "code"), [("never", 0), ("error", 1), ("warning", 1), ("INFO", 1)]
)
def test_fail_on_sets_the_exit_code(fail_on: str, code: int, tmp_path: Path) -> None:
    proc = run(
        "report",
        str(SAMPLE),
        "--out",
        str(tmp_path),
        "--cache",
        str(tmp_path / "c"),
        "--format",
        "json",
        "--fail-on",
        fail_on,
    )
    assert proc.returncode == code, proc.stderr
    summary = json.loads((tmp_path / "report.json").read_text())["summary"]
    assert summary["fail_on"] == fail_on.lower() and summary["verdict"] == (
        "pass" if code == 0 else "fail"
    )


def test_fail_on_never_says_what_was_found(tmp_path: Path) -> None:
    """Issue 14: "PASS: 3 error(s)" with --fail-on never. PASS only when nothing fired; here
    every output says what fired and that it does not fail the run."""
    proc = run(
        "report",
        str(SAMPLE),
        "--out",
        str(tmp_path),
        "--cache",
        str(tmp_path / "c"),
        "--format",
        "md,html,json",
        "--fail-on",
        "never",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "report.json").read_text())
    c = doc["summary"]["counts"]
    assert (
        c["error"] > 0 and doc["summary"]["verdict"] == "pass"
    )  # report.json's contract is unchanged
    said = f"{_counted(doc)} (not failing: --fail-on never)"
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(said) and "PASS" not in proc.stderr
    md = (tmp_path / "report.md").read_text()
    assert said in md and "pass" not in md.split("## Findings")[0].lower()
    html = (tmp_path / "report.html").read_text()
    top = html.split("<body>")[1].split("<h2>Findings</h2>")[0]
    assert f"<p class='not-failing'>{said}</p>" in top and "PASS" not in top.upper()


def test_relaxed_rule_file_passes(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[rules.DataLoaderStall]\nthreshold_pct = 90.0\n[rules.StragglerRank]\nenabled = false\n"
    )
    proc = run(
        "report",
        str(SAMPLE),
        "--out",
        str(tmp_path / "o"),
        "--cache",
        str(tmp_path / "c"),
        "--rules",
        str(rules),
        "--format",
        "md",
    )
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "o" / "report.md").read_text()
    assert "No rule fired" in md and "**PASS: no findings**" in md
    assert proc.stderr.strip().splitlines()[-1].startswith("PASS: no findings — wrote ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "unknown format 'pdf'; choose from md, html, json, junit"),
        (["--format", "PDF,md"], "unknown format 'PDF'"),
        (["--format", "md,"], "'md,' has an empty entry"),
        (["--format", ""], "no format given"),
        (["--fail-on", "sometimes"], "invalid value for '--fail-on'"),
        (["--bogus"], "no such option '--bogus'"),
        (["--rules", "/nonexistent/rules.toml"], "rule file not found"),
    ],
)
def test_bad_usage_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run("report", str(SAMPLE), "--out", str(tmp_path), "--cache", str(tmp_path / "c"), *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("stepscope: error: ") and proc.stderr.count("\n") == 1, (
        proc.stderr
    )
    assert message in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


def test_formats_are_case_insensitive_and_verbose_works(tmp_path: Path) -> None:
    """``--format MD`` as ``md``; ``-v`` on report as on ingest: a damaged line's note shows."""
    job = tmp_path / "job"
    shutil.copytree(SAMPLE, job)
    metrics = next(
        p for p in sorted(job.rglob("*.json")) if "system" in p.parts
    )  # SageMaker's JSON lines
    metrics.write_text(metrics.read_text() + "{not json\n")
    out = tmp_path / "o"
    args = ["report", str(job), "--out", str(out), "--format", "MD, Json,md", "--fail-on", "never"]
    quiet = run(*args, "--cache", str(tmp_path / "c1"))
    loud = run(*args, "--cache", str(tmp_path / "c2"), "-v")
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    assert sorted(p.name for p in out.glob("report.*")) == ["report.json", "report.md"]
    assert "malformed line" in loud.stderr and "malformed line" not in quiet.stderr


def test_bad_rule_file_is_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text("[rules.LowGPUUtilization]\nthreshold_p95 = 'high'\n")
    proc = run("report", str(SAMPLE), "--out", str(tmp_path), "--rules", str(rules))
    assert proc.returncode == 2 and "threshold_p95" in proc.stderr


def test_trace_strings_are_escaped(tmp_path: Path) -> None:
    job = tmp_path / "job<b>&x|y"
    shutil.copytree(SAMPLE, job)
    out = tmp_path / "o"
    proc = run(
        "report", str(job), "--out", str(out), "--cache", str(tmp_path / "c"), "--fail-on", "never"
    )
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert "job<b>" not in html and "job&lt;b&gt;&amp;x|y" in html
    md = (out / "report.md").read_text()
    # escaped only where Markdown would misread: the tag and the table pipe, not the & or >
    assert "# stepscope report: job&lt;b>&x\\|y\n" in md
    assert f"source `{job}`" in md  # a code span: no escapes inside, <b> is text there
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<b>" not in rendered and "job&lt;b&gt;&amp;x|y" in rendered


def test_markdown_reads_as_text_and_html_matches_it(sample_report) -> None:
    """Issue 14: report.md was full of ``\\(``, ``&gt;``, ``\\+`` and ``num\\_workers``;
    report.html lacked the headline table and left empty cells blank."""
    _proc, out = sample_report
    md = (out / "report.md").read_text()
    for escape in ("\\(", "\\)", "\\+", "\\_", "&gt;"):
        assert escape not in md, escape
    assert "`__getitem__`" in md and "`num_workers`" in md
    doc = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert "<table class='headline'>" in html and "<code>__getitem__</code>" in html
    head = doc["metrics"]["headline"]
    assert f"<td class='num'>{head['step_time_mean_ms']:.1f} ms</td>" in html
    assert f"| step time (mean) | {head['step_time_mean_ms']:.1f} ms |" in md
    ranks = html.split("<h2>Ranks</h2>")[1].split("</table>")[0]
    assert (
        "<td></td>" not in ranks and "<td>–</td>" in ranks
    )  # the sample has no GPU kernels: "–" as in the .md
    # each rank's step-time line in its colour from the report layer's palette, the dashboard's too
    assert all(f'"color":"{rank_color(r["rank"])}"' in html for r in doc["metrics"]["ranks"])


def test_baseline_comparison(tmp_path: Path) -> None:
    same = run(
        "report",
        str(SAMPLE),
        "--out",
        str(tmp_path / "a"),
        "--cache",
        str(tmp_path / "c"),
        "--baseline",
        str(SAMPLE),
        "--format",
        "json",
        "--fail-on",
        "warning",
    )
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    assert doc["baseline"]["comparisons"] and not any(
        c["regressed"] for c in doc["baseline"]["comparisons"]
    )
    assert not any(f["rule"] == "BaselineRegression" for f in doc["findings"])
    assert same.returncode == 1  # the sample's own findings still fail it

    # A baseline whose steps were twice as fast makes this run a step-time regression.
    base = tmp_path / "faster"
    shutil.copytree(SAMPLE, base)
    for trace in base.rglob("*.pt.trace.json.gz"):
        doc = json.loads(gzip.decompress(trace.read_bytes()))
        for ev in doc["traceEvents"]:
            if str(ev.get("name", "")).startswith("ProfilerStep#"):
                ev["dur"] = ev["dur"] / 2
        trace.write_bytes(gzip.compress(json.dumps(doc).encode()))
    run(
        "report",
        str(SAMPLE),
        "--out",
        str(tmp_path / "b"),
        "--cache",
        str(tmp_path / "c"),
        "--baseline",
        str(base),
        "--format",
        "json",
    )
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    regressions = [f for f in doc["findings"] if f["rule"] == "BaselineRegression"]
    assert {f["evidence"]["metric"] for f in regressions} >= {"step_time_mean_ms", "steps_per_s"}
    # the move a user acts on (ms, steps/s) first, the ratio after (issue 14 item 8)
    step = next(f for f in regressions if f["evidence"]["metric"] == "step_time_mean_ms")
    ev = step["evidence"]
    assert step["message"] == (
        f"mean step time (ms): {ev['baseline']} → {ev['current']} "
        f"({ev['change_points']:+g}, {ev['change_pct']:+.1f}%; tolerance 10.0%)"
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a damaged trace alone: its skip and the reason
        (
            {"x.pt.trace.json": b"garbage"},
            "1 skipped (",
        ),
        # a kind of file stepscope does not read (a JAX/XLA profile)
        ({"plugins/profile/run.xplane.pb": b"\x08\x01"}, "1 not a format stepscope reads"),
        # exit records alone say nothing about the training's time or health
        (
            {"exits/algo-1_rank0.json": b'{"node": "algo-1", "rank": 0, "optimizer_steps": 3}'},
            "1 file(s) found",
        ),
    ],
)
def test_a_source_with_no_profiler_data_is_exit_2_never_pass(
    files: dict[str, bytes], expected: str, tmp_path: Path
) -> None:
    """No verdict without data: a source whose files are all damaged, unknown or not
    profiler data is one line and exit 2, for report and ingest alike, and no report is
    written that a CI gate could read as a pass."""
    src = tmp_path / "job"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    out = tmp_path / "out"
    proc = run("report", str(src), "--out", str(out), "--cache", str(tmp_path / "c"), "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("stepscope: error: ")]
    assert f"no profiler data in {src}" in line and expected in line, line
    assert "PASS" not in proc.stdout + proc.stderr
    assert not out.exists() or not any(out.iterdir())
    proc = run("ingest", str(src), "--cache", str(tmp_path / "c"))
    assert proc.returncode == 2 and "no profiler data" in proc.stderr, proc.stderr


def test_a_baseline_with_no_profiler_data_is_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "base"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    proc = run(
        "report",
        str(SAMPLE),
        "--baseline",
        str(empty),
        "--out",
        str(tmp_path / "o"),
        "--cache",
        str(tmp_path / "c"),
        "-q",
    )
    assert proc.returncode == 2
    assert f"stepscope: error: --baseline: no profiler data in {empty}" in proc.stderr


def test_every_format_lists_the_files_it_could_not_read(tmp_path: Path) -> None:
    """A damaged file beside good data: the report is judged on the good data, and
    Markdown, HTML and JUnit each name the file and why it was not read (report.json and
    the dashboard's Overview already carry ``skipped_files``)."""
    src = tmp_path / "job"
    shutil.copytree(SAMPLE, src)
    (src / "algo-9_rank7.123.pt.trace.json").write_text("{ not json")
    out = tmp_path / "out"
    proc = run(
        "report",
        str(src),
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "c"),
        "-q",
        "--fail-on",
        "never",
    )
    assert proc.returncode == 0, proc.stderr
    md_text = (out / "report.md").read_text()
    assert "## Files not read (1)" in md_text and "algo-9_rank7.123.pt.trace.json" in md_text
    html_text = (out / "report.html").read_text()
    assert (
        "<h2>Files not read (1)</h2>" in html_text and "algo-9_rank7.123.pt.trace.json" in html_text
    )
    suite = ET.parse(out / "report.junit.xml").getroot().find("testsuite")
    assert suite is not None
    (case,) = [c for c in suite.iter("testcase") if c.get("classname") == "stepscope.ingest"]
    skipped = case.find("skipped")
    assert skipped is not None and "1 file(s) not read" in (skipped.get("message") or "")
    assert "algo-9_rank7.123.pt.trace.json" in (case.findtext("system-out") or "")
    assert int(suite.get("tests", "0")) == len(list(suite.iter("testcase")))


def test_a_folder_holds_one_runs_files_and_each_says_which_run(tmp_path: Path) -> None:
    """A second run with --format html leaves no .md/.json/.junit.xml of the first beside
    it, and every format names its run (source, time, stepscope version)."""
    out = tmp_path / "out"
    args = ("--out", str(out), "--cache", str(tmp_path / "c"), "--fail-on", "never")
    assert run("report", str(SAMPLE), *args).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "report.json",
        "report.junit.xml",
        "report.md",
    ]
    doc = json.loads((out / "report.json").read_text())
    stamp, version = doc["generated_at"], doc["stepscope_version"]
    assert f"written {stamp} by stepscope {version}" in (out / "report.md").read_text()
    suite = ET.parse(out / "report.junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("timestamp") == stamp
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["source"] == str(SAMPLE) and props["stepscope_version"] == version
    proc = run("report", str(SAMPLE), *args, "--format", "html")
    assert proc.returncode == 0
    assert [p.name for p in out.iterdir()] == ["report.html"]
    assert "removed" in proc.stderr and "of an earlier run" in proc.stderr
    assert "by stepscope" in (out / "report.html").read_text()

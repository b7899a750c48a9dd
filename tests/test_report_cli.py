"""``stepscope report`` end to end: files, exit codes, the JSON contract, JUnit, escaping, baseline."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stepscope", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("report")
    proc = run("report", str(SAMPLE), "--out", str(out), "--cache", str(out / "cache"))
    return proc, out


def test_writes_all_four_files_and_fails_on_error(sample_report) -> None:
    proc, out = sample_report
    assert proc.returncode == 1, proc.stderr
    for name in ("report.md", "report.html", "report.json", "report.junit.xml"):
        assert (out / name).stat().st_size > 0
    assert "Traceback" not in proc.stderr
    # the CI log names what fired: one line per finding, then the verdict
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("FAIL: 3 error(s)")
    assert [ln.split()[:2] for ln in lines[-4:-1]] == [["error", "DataLoaderStall"]] * 2 + [["error", "StragglerRank"]]


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
        assert {"rank", "comm_comp_overlap_pct", "temporal_pct", "kernel_share_pct", "idle_breakdown_pct", "kernel_launches", "gpu_annotations", "allocator_memory"} <= r.keys()
    assert {f["rule"] for f in doc["findings"]} >= {"DataLoaderStall", "StragglerRank"}


def test_junit_has_one_case_per_rule(sample_report) -> None:
    _proc, out = sample_report
    doc = json.loads((out / "report.json").read_text())
    root = ET.parse(out / "report.junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert sorted(c.get("name") for c in cases) == sorted(r["rule"] for r in doc["rules"])
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"DataLoaderStall", "StragglerRank"}


def test_html_is_self_contained(sample_report) -> None:
    _proc, out = sample_report
    html = (out / "report.html").read_text()
    assert "<script src=" not in html  # plotly.js inlined, nothing fetched
    assert "Plotly.newPlot" in html or "plotly" in html.lower()


@pytest.mark.parametrize(("fail_on", "code"), [("never", 0), ("error", 1), ("warning", 1), ("info", 1)])
def test_fail_on_sets_the_exit_code(fail_on: str, code: int, tmp_path: Path) -> None:
    proc = run("report", str(SAMPLE), "--out", str(tmp_path), "--cache", str(tmp_path / "c"), "--format", "json", "--fail-on", fail_on)
    assert proc.returncode == code, proc.stderr


def test_relaxed_rule_file_passes(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.DataLoaderStall]\nthreshold_pct = 90.0\n[rules.StragglerRank]\nenabled = false\n")
    proc = run("report", str(SAMPLE), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--rules", str(rules), "--format", "md")
    assert proc.returncode == 0, proc.stderr
    assert "No rule fired" in (tmp_path / "o" / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "unknown format"),
        (["--rules", "/nonexistent/rules.toml"], "rule file not found"),
    ],
)
def test_bad_usage_is_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run("report", str(SAMPLE), "--out", str(tmp_path), "--cache", str(tmp_path / "c"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_rule_file_is_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text("[rules.LowGPUUtilization]\nthreshold_p95 = 'high'\n")
    proc = run("report", str(SAMPLE), "--out", str(tmp_path), "--rules", str(rules))
    assert proc.returncode == 2 and "threshold_p95" in proc.stderr


def test_trace_strings_are_escaped(tmp_path: Path) -> None:
    job = tmp_path / "job<b>&x|y"
    shutil.copytree(SAMPLE, job)
    out = tmp_path / "o"
    proc = run("report", str(job), "--out", str(out), "--cache", str(tmp_path / "c"), "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert "job<b>" not in html and "job&lt;b&gt;&amp;x|y" in html
    md = (out / "report.md").read_text()
    assert "<b>" not in md and "job&lt;b&gt;&amp;x\\|y" in md


def test_baseline_comparison(tmp_path: Path) -> None:
    same = run("report", str(SAMPLE), "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "c"), "--baseline", str(SAMPLE), "--format", "json", "--fail-on", "warning")
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    assert doc["baseline"]["comparisons"] and not any(c["regressed"] for c in doc["baseline"]["comparisons"])
    assert not any(f["rule"] == "BaselineRegression" for f in doc["findings"])
    assert same.returncode == 1  # the sample's own findings still fail it

    # A baseline whose steps were twice as fast makes this run a step-time regression.
    base = tmp_path / "faster"
    shutil.copytree(SAMPLE, base)
    for trace in (base / "tensorboard").glob("*.pt.trace.json.gz"):
        doc = json.loads(gzip.decompress(trace.read_bytes()))
        for ev in doc["traceEvents"]:
            if str(ev.get("name", "")).startswith("ProfilerStep#"):
                ev["dur"] = ev["dur"] / 2
        trace.write_bytes(gzip.compress(json.dumps(doc).encode()))
    run("report", str(SAMPLE), "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "c"), "--baseline", str(base), "--format", "json")
    doc = json.loads((tmp_path / "b" / "report.json").read_text())
    regressions = [f for f in doc["findings"] if f["rule"] == "BaselineRegression"]
    assert {f["evidence"]["metric"] for f in regressions} >= {"step_time_mean_ms", "steps_per_s"}

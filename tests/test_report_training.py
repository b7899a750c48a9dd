"""The "Training health" section in report.json, report.md, report.html and report.junit.xml.

Jobs are real health-hook files (``tests/support/health_records.py``) read through the
whole pipeline (``stepscope report``); every figure is checked against the Job's training
methods, not against numbers written here.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from analyzer.job import Job
from rules.ruleset import load_ruleset
from stepscope.report.analyze import analyze
from stepscope.report.model import Report
from stepscope.report.rule_info import chart_of, training_rule_ids
from stepscope.report.training import (
    HEATMAP_BINS,
    MAX_POINTS,
    NO_DATA_NOTE,
    anchor,
    log_norms,
)
from tests.support.health_records import loss, sick_training_job, tensor, write_health


def _report(root: Path) -> tuple[Job, Report]:
    a = analyze(str(root), load_ruleset(), cache_dir=str(root.parent / f"{root.name}-cache"))
    return a.job, a.report


def _cli(root: Path, out: Path) -> dict[str, str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "report",
            str(root),
            "--out",
            str(out),
            "--cache",
            str(out / "cache"),
            "--fail-on",
            "never",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        ext: (out / f"report.{ext}").read_text(encoding="utf-8")
        for ext in ("json", "md", "html", "junit.xml")
    }


def _two_workers(root: Path) -> Path:
    """algo-1 rank 0 trains well; algo-2 rank 1 has a flat loss, a dead ReLU and a NaN gradient."""
    recs: list[dict[str, Any]] = loss(range(1, 61), lambda s: 2.0 / s)
    recs += loss(range(10, 61, 10), lambda s: 2.5 / s, tag="eval/loss")
    for s in range(1, 61):
        recs.append(
            tensor(s, "fc1.weight", "gradient", norm=0.5 / s, numel=4096, nan_count=0, inf_count=0)
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
                zero_fraction=0.4,
                min=0.0,
                max=3.0,
                numel=512,
                nan_count=0,
                inf_count=0,
            )
        )
    write_health(root, "algo-1", 0, recs)
    sick: list[dict[str, Any]] = loss(range(1, 61), lambda s: 0.7)
    for s in range(1, 61):
        recs_norm = float("nan") if s >= 50 else 0.2
        sick.append(
            tensor(
                s,
                "fc1.weight",
                "gradient",
                norm=None if s >= 50 else recs_norm,
                numel=4096,
                nan_count=7 if s >= 50 else 0,
                inf_count=0,
            )
        )
        sick.append(
            tensor(
                s,
                "net.1",
                "activation",
                module="ReLU",
                zero_fraction=1.0 if s >= 20 else 0.5,
                min=0.0,
                max=0.0 if s >= 20 else 1.0,
                numel=512,
                nan_count=0,
                inf_count=0,
            )
        )
    write_health(root, "algo-2", 1, sick)
    return root


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, Report]:
    return _report(_two_workers(tmp_path_factory.mktemp("two") / "job"))


def test_summary_matches_the_job(two: tuple[Job, Report]) -> None:
    job, rep = two
    th = rep.training_health
    assert th is not None and th.note is None
    labels = set(job.training_scalars()["worker_label"]) | set(
        job.training_tensors()["worker_label"]
    )
    assert [w.worker for w in th.workers] == sorted(labels) == ["algo-1 rank 0", "algo-2 rank 1"]
    losses = job.loss_series()
    for w in th.workers:
        mine = losses[(losses["worker_label"] == w.worker) & (losses["phase"] == "train")]
        finite = mine[np.isfinite(mine["value"].astype(float))]
        assert w.loss_tag == "loss" and w.last_loss == pytest.approx(
            float(finite["value"].iloc[-1])
        )
        assert w.last_loss_step == int(finite["step"].iloc[-1])
        steps = set(job.training_tensors().query("worker_label == @w.worker")["step"]) | set(
            mine["step"]
        )
        assert (w.first_step, w.last_step, w.steps) == (min(steps), max(steps), len(steps))
        grads = job.gradient_norms()
        assert w.gradient_layers == grads[grads["worker_label"] == w.worker]["name"].nunique()
        bad = job.nonfinite_steps()
        bad = bad[bad["worker_label"] == w.worker]
        assert w.first_nonfinite_step == (int(bad["step"].min()) if len(bad) else None)
    evals = losses[(losses["worker_label"] == "algo-1 rank 0") & (losses["phase"] == "eval")]
    assert th.workers[0].last_eval_loss == pytest.approx(float(evals["value"].iloc[-1]))
    assert th.workers[1].first_nonfinite_step == 50
    # every training rule is listed with the indexes of its own findings
    assert [v.rule for v in th.rules] == [
        r for r in training_rule_ids() if r in {x.rule for x in rep.rules}
    ]
    for v in th.rules:
        assert v.findings == [i for i, f in enumerate(rep.findings) if f.rule == v.rule]
        assert v.status == next(r.status for r in rep.rules if r.rule == v.rule)
    fired = {v.rule for v in th.rules if v.status == "fired"}
    assert {"LossNotDecreasing", "DeadRelu", "ExplodingTensor"} <= fired


def test_chart_series_match_the_job(two: tuple[Job, Report]) -> None:
    job, rep = two
    t = rep.charts.training
    assert t is not None
    losses = job.loss_series()
    got = t.loss.frame()
    assert len(got) == len(losses)  # short series are not binned
    assert np.allclose(got["value"].astype(float), losses["value"].astype(float), equal_nan=True)
    grads = job.gradient_norms()
    for hm in t.gradient_norms:
        g = grads[grads["worker_label"] == hm.worker]
        assert hm.rows == list(dict.fromkeys(g["name"]))
        pivot = g.pivot_table(index="name", columns="step", values="norm", dropna=False).reindex(
            hm.rows
        )
        assert hm.steps == [float(s) for s in pivot.columns]
        expect = pivot.to_numpy(dtype=float)
        values = np.array(
            [[np.nan if v is None else v for v in row] for row in hm.values], dtype=float
        )
        assert np.allclose(values, expect, equal_nan=True)
    ratios = job.update_ratios()
    assert np.allclose(t.update_ratios.frame()["ratio"], ratios["ratio"].astype(float))
    acts = job.activation_stats()
    assert np.allclose(t.activations.frame()["zero_fraction"], acts["zero_fraction"].astype(float))
    layers = t.layers.frame()
    dead = layers[(layers["worker"] == "algo-2 rank 1") & (layers["layer"] == "net.1")].iloc[0]
    a = acts[(acts["worker_label"] == "algo-2 rank 1") & (acts["name"] == "net.1")]
    assert (dead["measure"], dead["module"], dead["points"]) == ("zero_fraction", "ReLU", len(a))
    assert dead["max"] == a["zero_fraction"].max() and dead["last"] == a["zero_fraction"].iloc[-1]


def test_long_series_are_binned_and_json_is_small(tmp_path: Path) -> None:
    root = tmp_path / "job"
    n = 3 * MAX_POINTS
    recs = loss(range(1, n + 1), lambda s: 1.0 / math.sqrt(s))
    recs += [
        tensor(s, f"l{k}.weight", "gradient", norm=float(k + 1) / s, numel=100)
        for s in range(1, n + 1)
        for k in range(3)
    ]
    write_health(root, "algo-1", 0, recs)
    job, rep = _report(root)
    t = rep.charts.training
    assert t is not None
    assert 0 < len(t.loss) <= MAX_POINTS
    losses = job.loss_series()
    assert t.loss.frame()["value"].mean() == pytest.approx(
        losses["value"].mean(), rel=0.02
    )  # bins keep the level
    (hm,) = t.gradient_norms
    assert len(hm.steps) == HEATMAP_BINS and hm.rows == ["l0.weight", "l1.weight", "l2.weight"]
    # a bin's value is the mean of the norms recorded in it
    g = job.gradient_norms()
    first = g[(g["name"] == "l0.weight") & (g["step"] < 1 + (n - 1) / HEATMAP_BINS)]
    assert hm.values[0][0] == pytest.approx(first["norm"].mean())
    doc = json.dumps(rep.document())
    assert len(doc) < 50_000 and "training" not in json.dumps(rep.document().get("charts", {}))
    assert rep.document()["training_health"]["workers"][0]["last_loss"] == pytest.approx(
        1.0 / math.sqrt(n)
    )


def test_every_format_on_a_recorded_job(tmp_path: Path) -> None:
    root = _two_workers(tmp_path / "job")
    _, rep = _report(root)
    files = _cli(root, tmp_path / "out")
    doc = json.loads(files["json"])
    assert (
        doc["training_health"]
        == json.loads(rep.model_dump_json(include={"training_health"}))["training_health"]
    )
    assert "charts" not in doc
    md = files["md"]
    section = md[md.index("## Training health") :]
    th = rep.training_health
    assert th is not None
    for w in th.workers:
        assert (
            f"| {w.worker} | {w.steps} | {w.first_step}–{w.last_step} | "
            f"{w.last_loss:.4g} (loss, step {w.last_loss_step})" in section
        )
    html = files["html"]
    ids = set(re.findall(r"id=['\"](training-[^'\"]+)['\"]", html))
    links = re.findall(r"href='#(training-[^']+)'", html)
    training = [f for v in th.rules for f in (doc["findings"][i] for i in v.findings)]
    assert training and len(links) == len(training)
    assert (
        set(links) <= ids
    )  # each finding's link lands on a chart (or the line saying it was not recorded)
    for f in rep.findings:
        if f.rule in {v.rule for v in th.rules}:
            link = anchor(chart_of(f), f.evidence["worker"])
            assert link in links and f"(report.html#{link})" in section
    assert (
        anchor("gradient_norms", "algo-2 rank 1") in ids
        and anchor("activations", "algo-2 rank 1") in ids
    )
    # JUnit: each training rule's case names the worker, the layer and the step range
    suite = ET.fromstring(files["junit.xml"]).find("testsuite")
    assert suite is not None
    dead = next(c for c in suite.iter("testcase") if c.get("name") == "DeadRelu")
    text = " ".join(filter(None, [(e.get("message") or "") + (e.text or "") for e in dead]))
    assert "algo-2 rank 1" in text and "net.1" in text and "20-60" in text
    for v in th.rules:
        case = next(c for c in suite.iter("testcase") if c.get("name") == v.rule)
        if v.status == "fired":
            body = " ".join((e.get("message") or "") + (e.text or "") for e in case)
            assert all(doc["findings"][i]["evidence"]["worker"] in body for i in v.findings), v.rule


def test_no_training_data_says_what_fills_it(tmp_path: Path) -> None:
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
    files = _cli(tmp_path / "job", tmp_path / "out")
    doc = json.loads(files["json"])
    assert (
        doc["training_health"]["workers"] == [] and doc["training_health"]["note"] == NO_DATA_NOTE
    )
    assert {v["status"] for v in doc["training_health"]["rules"]} == {"skipped"}
    for text in ("SummaryWriter", "debug-output/", "stepscope run --health"):
        assert text in NO_DATA_NOTE
    md = files["md"]
    assert (
        md[md.index("## Training health") :].splitlines()[2].startswith("No training-health data")
    )
    assert "Training health</h2><p>No training-health data" in files["html"].replace("\n", "")


def test_sick_job_links_each_rule_to_its_chart(tmp_path: Path) -> None:
    _, rep = _report(sick_training_job(tmp_path / "job"))
    th = rep.training_health
    assert th is not None
    charts = {
        v.rule: {chart_of(rep.findings[i]) for i in v.findings} for v in th.rules if v.findings
    }
    assert charts["VanishingGradient"] == {"gradient_norms"} and charts["DeadRelu"] == {
        "activations"
    }
    assert charts["WeightUpdateRatio"] == {"update_ratios"} and charts["LossNotDecreasing"] == {
        "loss"
    }
    assert charts["ExplodingTensor"] == {"loss"}  # the loss went NaN first


def test_heatmap_colour_keeps_zero_norms_visible() -> None:
    """A dead layer's zero gradient is the scale's floor, a NaN stays a gap."""
    got = log_norms(np.array([[0.0, 1e-3, np.nan, 1.0]]))
    assert got[0, 0] == pytest.approx(-4.0) and got[0, 1] == pytest.approx(-3.0)
    assert np.isnan(got[0, 2]) and got[0, 3] == pytest.approx(0.0)

"""SageMaker Debugger tensor output read without smdebug: the fixture written by smdebug's own
writer (``sagemaker-debugger/debug-output-job``) reads with the values its ``WRITTEN.json``
states, every tensor its ``index/`` lists, and -- where the peers env is set up
(``bench/setup_peers.sh``) -- the values smdebug's trial API returns."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from analyzer.ingest import ingest, keys
from analyzer.ingest.debugger_tensors import classify, iter_records, parse_debugger_tensors
from analyzer.job import Job
from analyzer.sources import open_source
from tests.support.fixtures import REPO_ROOT, fixtures_dir

LOSS = "CrossEntropyLoss_output_0"
PEERS_PYTHON = (
    Path(os.environ.get("STEPSCOPE_PEERS_VENV", REPO_ROOT / ".venv-peers")) / "bin" / "python"
)


@cache
def _root() -> Path:
    return fixtures_dir("sagemaker-debugger", "debug-output-job")


@cache
def _job() -> Job:
    return Job(
        ingest(
            open_source(str(_root())), cache_dir=Path("/tmp") / f"stepscope-test-dbg-{os.getpid()}"
        ).dataset
    )


def test_keys() -> None:
    assert keys.is_debugger_tensors(
        "debug-output/events/000000000010/000000000010_worker_0.tfevents"
    )
    assert not keys.is_debugger_tensors("debug-output/index/000000000/000000000010_worker_0.json")
    assert classify("gradient/fc1.weight", 2048) == ("gradient", "fc1.weight", None)
    assert classify("relu1_output_0", 1024) == ("activation", "relu1_output_0", "relu1")
    assert classify(LOSS, 1) == ("scalar", LOSS, None)
    assert classify("fc1.weight", 2048) == ("weight", "fc1.weight", None)


def test_values_are_those_written() -> None:
    truth = json.loads((_root() / "WRITTEN.json").read_text())["truth"]
    job = _job()
    scalars = job.training_scalars()
    train = scalars[scalars["tag"] == LOSS]
    acts = job.activation_stats()
    for worker, steps in truth.items():
        for step, want in steps.items():
            row = train[(train["worker"] == worker) & (train["step"] == int(step))]
            assert row["value"].tolist() == pytest.approx([want["loss"]], rel=1e-7), (worker, step)
            act = acts[
                (acts["worker_label"] == worker)
                & (acts["step"] == int(step))
                & (acts["name"] == "relu1_output_0")
            ]
            assert act["zero_fraction"].tolist() == [want["relu1_zero_frac"]], (worker, step)
    assert set(job.training_tensors()["rank"]) == {0, 1}  # worker_<n> → rank n


def test_every_indexed_tensor_is_read() -> None:
    """smdebug's index names each tensor of each (step, worker) file; all of them are in the
    tables, EVAL-mode scalars under ``eval/``, and nothing else is."""
    job = _job()
    scalars = job.training_scalars()
    tensors = job.training_tensors()
    read: dict[tuple[int, str], set[str]] = {}
    for r in scalars.itertuples():
        read.setdefault((int(r.step), r.worker), set()).add(r.tag)
    names = {"gradient": "gradient/{}", "weight": "{}", "activation": "{}"}
    for r in tensors.itertuples():
        read.setdefault((int(r.step), r.worker), set()).add(names[r.role].format(r.name))
    indexed: dict[tuple[int, str], set[str]] = {}
    for index in sorted((_root() / "debug-output" / "index").rglob("*.json")):
        doc = json.loads(index.read_text())
        step, worker = index.stem.split("_", 1)
        prefix = "eval/" if doc["meta"]["mode"] == "EVAL" else ""
        indexed[(int(step), worker)] = {
            (prefix if t["tensorname"] == LOSS else "") + t["tensorname"]
            for t in doc["tensor_payload"]
        }
    assert len(indexed) == 82
    assert read == indexed


def test_a_damaged_file_keeps_its_good_records(tmp_path: Path) -> None:
    src = _root() / "debug-output" / "events" / "000000000010" / "000000000010_worker_1.tfevents"
    data = src.read_bytes()
    records, stopped = iter_records(data)
    assert stopped is None and len(records) == 6
    key = "debug-output/events/000000000010/000000000010_worker_1.tfevents"
    cut = parse_debugger_tensors(data[:-20], key)
    assert cut.warnings and "truncated record" in cut.warnings[0]
    assert (
        cut.tables["training_scalars"].num_rows == 1
        and cut.tables["training_tensors"].num_rows == 4
    )
    # smdebug writes no data checksum (a constant footer): a footer that is neither that
    # constant nor the data's CRC ends the file there (the index says record 2 is 100-8442)
    flipped = bytearray(data)
    flipped[8440] ^= 0xFF
    bad = parse_debugger_tensors(bytes(flipped), key)
    assert "fails its checksum" in bad.warnings[0] and bad.rows == 1
    # through ingest: a file with nothing readable is one counted skip
    out = tmp_path / "debug-output" / "events" / "000000000010"
    out.mkdir(parents=True)
    (out / "000000000010_worker_1.tfevents").write_bytes(data[:-20])
    (out / "000000000010_worker_0.tfevents").write_bytes(data[:5])
    result = ingest(open_source(str(tmp_path)), cache_dir=tmp_path / "cache")
    assert result.summary["tables"]["training_tensors"] == 4
    assert len(result.summary["skipped"]) == 1 and len(result.summary["warnings"]) == 1


_SMDEBUG_SCRIPT = r"""
import json, sys
import numpy as np
from smdebug.trials import create_trial
from smdebug.core.modes import ModeKeys
t = create_trial(sys.argv[1])
out = {}
for name in t.tensor_names():
    tensor = t.tensor(name)
    for step in tensor.steps(mode=ModeKeys.TRAIN):
        for worker in tensor.workers(step, mode=ModeKeys.TRAIN):
            v = np.asarray(tensor.value(step, mode=ModeKeys.TRAIN, worker=worker), dtype=np.float64)
            out[f"{worker}|{name}|{step}"] = [
                float(np.sqrt((v * v).sum())), float((v == 0).mean()), int(v.size)
            ]
print(json.dumps(out))
"""


def _smdebug_values() -> dict[str, Any]:
    if not PEERS_PYTHON.exists():
        pytest.skip("smdebug env not set up: run bench/setup_peers.sh")
    env = {**os.environ, "SMDEBUG_LOG_LEVEL": "error"}
    proc = subprocess.run(
        [str(PEERS_PYTHON), "-c", _SMDEBUG_SCRIPT, str(_root() / "debug-output")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    values: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return values


def test_same_values_as_smdebug() -> None:
    ref = _smdebug_values()
    job = _job()
    ours: dict[str, list[float]] = {}
    for r in job.training_scalars().itertuples():
        if not str(r.tag).startswith("eval/"):
            ours[f"{r.worker}|{r.tag}|{r.step}"] = [abs(float(r.value)), float(r.value == 0), 1]
    prefix = {"gradient": "gradient/", "weight": "", "activation": ""}
    for r in job.training_tensors().itertuples():
        ours[f"{r.worker}|{prefix[r.role]}{r.name}|{r.step}"] = [
            float(r.norm),
            float(r.zero_fraction),
            int(r.numel),
        ]
    assert set(ours) == set(ref)
    for k, want in ref.items():
        assert ours[k] == pytest.approx(want, rel=1e-6), k


def test_weight_update_ratio_on_norms_alone_says_it_cannot_judge_small_updates() -> None:
    """The fixture's weights are kept as norms: "too small" cannot be judged from them, so
    WeightUpdateRatio says so in its status instead of reading as a pass."""
    from rules.engine import evaluate
    from rules.ruleset import load_ruleset

    (result,) = [r for r in evaluate(_job(), load_ruleset()) if r.rule == "WeightUpdateRatio"]
    assert result.findings == []
    reason = result.skipped_reason or ""
    assert reason.startswith(
        "too small updates cannot be judged for 2 worker(s) (worker_0, worker_1)"
    )
    assert "no update above large_threshold 10 was found" in reason

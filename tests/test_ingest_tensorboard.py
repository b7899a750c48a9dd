"""TensorBoard event files in, training tables out: real files written by TensorBoard's own
writer (``EventFileWriter``), read back through the ingest pipeline; truncated and foreign
files are counted skips or warnings that keep every good record."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from analyzer.ingest import ingest, keys
from analyzer.ingest.formats import classify
from analyzer.ingest.tensorboard_events import host_from_key, parse_tensorboard_events
from analyzer.job import Job
from analyzer.sources import open_source


def _scalar(tag: str, value: float) -> summary_pb2.Summary.Value:
    return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def _histo(tag: str, values: np.ndarray) -> summary_pb2.Summary.Value:
    counts, edges = np.histogram(values, bins=10)
    h = summary_pb2.HistogramProto(
        min=float(values.min()),
        max=float(values.max()),
        num=float(values.size),
        sum=float(values.sum()),
        sum_squares=float(np.dot(values, values)),
        bucket_limit=edges[1:].tolist(),
        bucket=counts.tolist(),
    )
    return summary_pb2.Summary.Value(tag=tag, histo=h)


def write_run(logdir: Path, steps: dict[int, list[summary_pb2.Summary.Value]]) -> Path:
    """One event file written by TensorBoard's writer; returns its path."""
    writer = EventFileWriter(str(logdir))
    for step, values in steps.items():
        writer.add_event(
            event_pb2.Event(
                step=step,
                wall_time=1_700_000_000.0 + step,
                summary=summary_pb2.Summary(value=values),
            )
        )
    writer.close()
    (path,) = logdir.glob("events.out.tfevents.*")
    return path


GRAD = np.linspace(-0.5, 0.5, 64)


def _job_run(root: Path) -> Path:
    return write_run(
        root / "tb" / "run1",
        {
            1: [
                _scalar("train/loss", 0.9),
                _scalar("train/lr", 0.1),
                _scalar("gradients/fc.weight/norm", 2.0),
                _histo("gradients/fc.weight", GRAD),
                _scalar("update_ratio/fc.weight", 1e-3),
                _scalar("activations/net.1:ReLU/zero_fraction", 0.25),
            ],
            2: [
                _scalar("train/loss", 0.7),
                _scalar("eval/loss", 0.8),
                _scalar("gradients/fc.weight/norm", float("nan")),
            ],
            3: [_scalar("train/loss", float("inf"))],
        },
    )


def test_keys_and_the_host_in_the_file_name() -> None:
    key = "tb/run1/events.out.tfevents.1700000000.ip-10-0-0-1.ec2.internal.4242.0"
    assert keys.is_tensorboard_events(key)
    fmt = classify(key)
    assert fmt is not None and fmt.id == "tensorboard_events"
    assert host_from_key(key) == "ip-10-0-0-1.ec2.internal"
    assert not keys.is_tensorboard_events("tb/run1/events.json")
    assert not keys.is_tensorboard_events(
        "debug-output/events/000000000010/000000000010_worker_0.tfevents"
    )


def test_scalars_and_the_tensor_layout(tmp_path: Path) -> None:
    _job_run(tmp_path)
    job = Job.open(open_source(str(tmp_path)), cache_dir=str(tmp_path / "cache"))
    scalars = job.training_scalars()
    got = {(r.tag, r.step): r.value for r in scalars.itertuples()}
    assert got[("train/loss", 1)] == pytest.approx(0.9)
    assert got[("eval/loss", 2)] == pytest.approx(0.8)
    assert math.isinf(got[("train/loss", 3)])  # kept, not dropped: it is what ExplodingTensor finds
    assert set(scalars["run"]) == {"tb/run1"} and set(scalars["worker_label"]) == {"tb/run1"}
    assert set(scalars["source"]) == {"tensorboard"} and set(scalars["node"]) == {
        host_from_key(str(next((tmp_path / "tb" / "run1").glob("events*"))))
    }
    # per-tensor statistics never leak into the scalars table
    assert not any(
        t.startswith(("gradients/", "update_ratio/", "activations/")) for t in scalars["tag"]
    )

    tensors = job.training_tensors()
    grad = tensors[(tensors["role"] == "gradient") & (tensors["step"] == 1)].iloc[0]
    assert grad["name"] == "fc.weight"
    assert grad["norm"] == pytest.approx(
        2.0
    )  # the logged norm wins over the histogram's sqrt(sum_squares)
    assert (
        grad["numel"] == 64
        and grad["min"] == pytest.approx(-0.5)
        and grad["max"] == pytest.approx(0.5)
    )
    assert grad["mean"] == pytest.approx(0.0, abs=1e-9) and grad["std"] == pytest.approx(
        GRAD.std(), rel=1e-6
    )
    act = tensors[tensors["role"] == "activation"].iloc[0]
    assert (act["name"], act["module"], act["zero_fraction"]) == ("net.1", "ReLU", 0.25)
    assert job.update_ratios()["ratio"].tolist() == pytest.approx([1e-3])
    # a NaN norm is a NaN tensor; the rows without statistics are not
    bad = job.nonfinite_steps()
    assert sorted(zip(bad["kind"], bad["name"], bad["step"], strict=True)) == [
        ("scalar", "train/loss", 3),
        ("tensor", "fc.weight", 2),
    ]
    assert job.loss_trend().set_index("tag").loc["train/loss", "last_value"] == pytest.approx(0.7)


def test_a_truncated_event_file_keeps_its_complete_records(tmp_path: Path) -> None:
    path = _job_run(tmp_path / "src")
    data = path.read_bytes()
    whole = parse_tensorboard_events(data, "run/" + path.name)
    cut = parse_tensorboard_events(data[:-7], "run/" + path.name)
    assert cut.warnings and "truncated" in cut.warnings[0]
    assert cut.tables["training_scalars"].num_rows == whole.tables["training_scalars"].num_rows - 1
    assert not whole.warnings

    job_dir = tmp_path / "job"
    (job_dir / "run").mkdir(parents=True)
    (job_dir / "run" / path.name).write_bytes(data[:-7])
    (job_dir / "run" / "events.out.tfevents.1700000001.host").write_bytes(
        b"not an event file at all"
    )
    result = ingest(open_source(str(job_dir)), cache_dir=tmp_path / "cache")
    assert (
        result.summary["tables"]["training_scalars"]
        == whole.tables["training_scalars"].num_rows - 1
    )
    assert [w["warning"] for w in result.summary["warnings"]] == [cut.warnings[0]]
    assert (
        len(result.summary["skipped"]) == 1
        and "no complete TensorBoard event record" in result.summary["skipped"][0]["reason"]
    )

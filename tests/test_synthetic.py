"""The synthetic system-metrics generator writes SageMaker's format exactly, at the declared
size, with injected patterns where their ground truth says."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.synthetic import (
    CPUBottleneck,
    GPUMemoryGrowth,
    IOBottleneck,
    LowGPU,
    Pattern,
    StalledNode,
    generate_system_metrics,
    main,
    rows_per_sample,
)

FILE_RE = re.compile(
    r"profiler-output/system/incremental/(?P<hour>\d{10})/(?P<epoch>\d+)\.(?P<node>algo-\d+)\.json$"
)
KEYS = ["Type", "Name", "Dimension", "Value", "NodeId", "Timestamp"]
START = 1700000000.0  # 20 s into a minute: the first file is named after 1699999980


def _records(job_files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for f in job_files:
        for line in f.read_text().splitlines():
            out.append(json.loads(line))
    return out


def _series(
    recs: list[dict[str, Any]], node: str, name: str, dim: str
) -> tuple[np.ndarray, np.ndarray]:
    sel = [
        (r["Timestamp"], r["Value"])
        for r in recs
        if r["NodeId"] == node and r["Name"] == name and r["Dimension"] == dim
    ]
    sel.sort()
    a = np.array(sel)
    return a[:, 0] - START, a[:, 1]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("syn")
    job = generate_system_metrics(out, nodes=2, gpus=2, cpus=3, minutes=2, seed=7)
    return job, _records(job.files)


def test_layout_and_exact_record_format(small: Any) -> None:
    job, _ = small
    assert job.files, "no files written"
    for f in job.files:
        rel = f.relative_to(job.out_dir).as_posix()
        m = FILE_RE.search(rel)
        assert m, rel
        epoch = int(m["epoch"])
        assert epoch % 60 == 0
        assert m["hour"] == dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y%m%d%H")
        text = f.read_text()
        assert text.endswith("\n")
        first = True
        for line in text.splitlines():
            rec = json.loads(line)
            assert list(rec) == KEYS
            # byte-for-byte what Python's json writes compactly, as SageMaker's agent does
            assert line == json.dumps(rec, separators=(",", ":"))
            assert rec["NodeId"] == m["node"]
            assert isinstance(rec["Value"], float) and isinstance(rec["Timestamp"], float)
            assert epoch <= rec["Timestamp"] < epoch + 60
            if first:  # file named after the minute of its first sample
                assert int(rec["Timestamp"] // 60) * 60 == epoch
                first = False
    names = sorted(f.name for f in job.files)
    assert names[0] == "1699999980.algo-1.json"
    assert len(job.files) == 2 * 3  # 2 nodes x minutes 22:13, :14, :15 (2 min from :13:20)


def test_counts_and_spellings(small: Any) -> None:
    job, recs = small
    per_sample = rows_per_sample(3, 2)
    assert per_sample == 1 + 3 * 2 + 2 * 2 + 7 == job.rows_per_sample
    assert job.samples_per_node == 2 * 60 / 0.5
    assert len(recs) == job.rows == 2 * job.samples_per_node * per_sample
    assert job.bytes == sum(f.stat().st_size for f in job.files)
    kinds = Counter((r["NodeId"], r["Type"], r["Name"], r["Dimension"]) for r in recs)
    expected = {
        ("memory", "MemoryUsedPercent", ""),
        ("i/o", "IOPS", ""),
        ("i/o", "ReadThroughputInBytesPerSecond", ""),
        ("i/o", "WriteThroughputInBytesPerSecond", ""),
    }
    for c in range(3):
        expected |= {("cpu", f"cpu{c}", "CPUUtilization"), ("cpu", f"cpu{c}", "I/OWaitPercentage")}
    for g in range(2):
        expected |= {
            ("gpu", f"gpu{g}", "GPUUtilization"),
            ("gpu", f"gpu{g}", "GPUMemoryUtilization"),
        }
    for d in ("Algorithm", "Platform"):
        expected |= {
            ("network", "ReceiveBytesPerSecond", d),
            ("network", "TransmitBytesPerSecond", d),
        }
    assert {k[1:] for k in kinds} == expected
    assert set(kinds.values()) == {job.samples_per_node}
    assert {k[0] for k in kinds} == {"algo-1", "algo-2"}


def test_timestamps_interval_and_snapshot_window(small: Any) -> None:
    job, recs = small
    by_sample: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in recs:
        by_sample[(r["NodeId"], round((r["Timestamp"] - START) / 0.5))].append(r["Timestamp"])
    assert len(by_sample) == 2 * job.samples_per_node
    for ts in by_sample.values():
        assert max(ts) - min(ts) < 0.02  # smdebug's snapshot window
    t, _ = _series(recs, "algo-1", "cpu0", "CPUUtilization")
    assert np.all(np.diff(t) > 0.49) and np.all(np.diff(t) < 0.51)
    assert job.start == pytest.approx(START, abs=0.01)
    assert job.end == pytest.approx(START + 120 - 0.5, abs=0.02)


def test_baseline_is_a_busy_healthy_job(small: Any) -> None:
    _, recs = small
    vals: dict[str, list[float]] = defaultdict(list)
    for r in recs:
        vals[r["Dimension"] or r["Name"]].append(r["Value"])
    gpu = np.array(vals["GPUUtilization"])
    assert gpu.min() >= 80 and 85 <= gpu.mean() <= 98
    assert 50 <= np.mean(vals["GPUMemoryUtilization"]) <= 70
    assert 20 <= np.mean(vals["CPUUtilization"]) <= 40
    assert np.max(vals["I/OWaitPercentage"]) <= 5
    assert 20 <= np.mean(vals["MemoryUsedPercent"]) <= 45


def test_patterns_land_where_declared(tmp_path: Path) -> None:
    patterns: list[Pattern] = [
        LowGPU(1, 0, 10, 20, level=5),
        CPUBottleneck(1, 30, 40),
        IOBottleneck("algo-1", 50, 60),
        GPUMemoryGrowth(1, 1, 60, 90, from_pct=60, to_pct=90),
        StalledNode(2, 70, 80),
        LowGPU(2, None, 100, 110, level=30),
    ]
    job = generate_system_metrics(tmp_path, nodes=2, gpus=2, cpus=3, minutes=2, patterns=patterns)
    recs = _records(job.files)

    def win(t: np.ndarray, a: float, b: float) -> np.ndarray:
        return (t >= a) & (t < b)

    # LowGPU on gpu0 only
    t, v = _series(recs, "algo-1", "gpu0", "GPUUtilization")
    assert np.all(v[win(t, 10, 20)] <= 7) and np.all(v[win(t, 10, 20)] >= 3)
    assert np.all(v[t < 10] >= 80) and np.all(v[win(t, 20, 30)] >= 80)
    t1, v1 = _series(recs, "algo-1", "gpu1", "GPUUtilization")
    assert np.all(v1[win(t1, 10, 20)] >= 80)
    # CPU bottleneck: all cores high, GPUs idle
    for c in range(3):
        t, v = _series(recs, "algo-1", f"cpu{c}", "CPUUtilization")
        assert np.all(v[win(t, 30, 40)] >= 92) and np.all(v[~win(t, 30, 40)] < 92)
    for g in range(2):
        t, v = _series(recs, "algo-1", f"gpu{g}", "GPUUtilization")
        assert np.all(v[win(t, 30, 40)] <= 5) and np.all(v[win(t, 50, 60)] <= 5)
    # I/O bottleneck: I/O wait high on every core
    t, v = _series(recs, "algo-1", "cpu2", "I/OWaitPercentage")
    assert np.all(v[win(t, 50, 60)] >= 60) and np.all(v[~win(t, 50, 60)] <= 5)
    # memory growth: ramps from 60 to 90 and plateaus
    t, v = _series(recs, "algo-1", "gpu1", "GPUMemoryUtilization")
    ramp = v[win(t, 60, 90)]
    assert ramp[0] == pytest.approx(60, abs=1) and ramp[-1] == pytest.approx(90, abs=1.5)
    assert np.all(np.diff(ramp) > -0.5)
    assert np.all(np.abs(v[t >= 90] - 90) < 1)
    assert np.all(v[t < 60] < 70)
    # stalled node 2 while node 1 keeps going
    t, v = _series(recs, "algo-2", "gpu0", "GPUUtilization")
    assert np.all(v[win(t, 70, 80)] <= 2) and np.all(v[win(t, 80, 100)] >= 80)
    t, v = _series(recs, "algo-1", "gpu0", "GPUUtilization")
    assert np.all(v[win(t, 70, 80)] >= 80)
    t, v = _series(recs, "algo-2", "cpu0", "CPUUtilization")
    assert np.all(v[win(t, 70, 80)] <= 5)
    # LowGPU with gpu=None hits every GPU of the node
    for g in range(2):
        t, v = _series(recs, "algo-2", f"gpu{g}", "GPUUtilization")
        assert np.all(np.abs(v[win(t, 100, 110)] - 30) <= 2)

    truth = {(x.kind, x.node, x.start_s): x for x in job.truth}
    assert len(truth) == len(patterns)
    low = truth[("LowGPU", "algo-1", 10)]
    assert low.devices == ("gpu0",) and low.dimensions == ("GPUUtilization",)
    assert (low.start, low.end) == (START + 10, START + 20)
    assert truth[("LowGPU", "algo-2", 100)].devices == ("gpu0", "gpu1")
    assert truth[("IOBottleneck", "algo-1", 50)].dimensions[0] == "I/OWaitPercentage"
    grow = truth[("GPUMemoryGrowth", "algo-1", 60)]
    assert grow.end == START + 120 and grow.params["ramp_end_s"] == 90
    json.dumps(job.to_dict())  # the truth is JSON-serialisable


def test_deterministic_with_seed(tmp_path: Path) -> None:
    kw: dict[str, Any] = dict(nodes=2, gpus=1, cpus=2, minutes=1.5, patterns=[LowGPU(2, 0, 5, 15)])
    a = generate_system_metrics(tmp_path / "a", seed=3, **kw)
    b = generate_system_metrics(tmp_path / "b", seed=3, **kw)
    c = generate_system_metrics(tmp_path / "c", seed=4, **kw)
    rel = [f.relative_to(a.out_dir) for f in a.files]
    assert rel == [f.relative_to(b.out_dir) for f in b.files]
    assert all((a.out_dir / r).read_bytes() == (b.out_dir / r).read_bytes() for r in rel)
    assert any((a.out_dir / r).read_bytes() != (c.out_dir / r).read_bytes() for r in rel)


def test_smaller_record_set_and_validation(tmp_path: Path) -> None:
    job = generate_system_metrics(
        tmp_path,
        nodes=1,
        gpus=2,
        cpus=4,
        minutes=0.5,
        start=1700000040.0,
        io_wait=False,
        io_network=False,
    )
    assert job.rows_per_sample == rows_per_sample(4, 2, io_wait=False, io_network=False) == 9
    assert job.rows == 60 * 9 and len(job.files) == 1
    assert {r["Type"] for r in _records(job.files)} == {"memory", "cpu", "gpu"}
    with pytest.raises(ValueError, match="I/O-wait"):
        generate_system_metrics(tmp_path, nodes=1, io_wait=False, patterns=[IOBottleneck(1, 0, 5)])
    with pytest.raises(ValueError, match="algo-3"):
        generate_system_metrics(tmp_path, nodes=2, patterns=[StalledNode(3, 0, 5)])
    with pytest.raises(ValueError, match="gpu"):
        generate_system_metrics(tmp_path, gpus=2, patterns=[LowGPU(1, 2, 0, 5)])
    with pytest.raises(ValueError, match="end_s"):
        generate_system_metrics(tmp_path, patterns=[CPUBottleneck(1, 5, 5)])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.json"
    rc = main(
        [
            str(tmp_path / "job"),
            "--nodes",
            "2",
            "--gpus",
            "2",
            "--cpus",
            "2",
            "--minutes",
            "1",
            "--interval",
            "1",
            "--low-gpu",
            "1:1:5:10",
            "--low-gpu",
            "2:all:20:30:12",
            "--stalled-node",
            "2:40:50",
            "--gpu-mem-growth",
            "1:0:0:30:60:80",
            "--truth",
            str(truth),
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 2 * 60 * rows_per_sample(2, 2)
    data = json.loads(truth.read_text())
    kinds = [(t["kind"], t["node"], tuple(t["devices"])) for t in data["truth"]]
    assert ("LowGPU", "algo-1", ("gpu1",)) in kinds
    assert ("LowGPU", "algo-2", ("gpu0", "gpu1")) in kinds
    assert data["truth"][1]["params"]["level"] == 12
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad"), "--low-gpu", "1:0:5"])


def test_readable_by_stepscope_ingest(small: Any) -> None:
    ingest = pytest.importorskip("analyzer.ingest.system_metrics", reason="ingest not present")
    job, _ = small
    total = 0
    for f in job.files:
        key = f.relative_to(job.out_dir).as_posix()
        parsed = ingest.parse_system_metrics(f.read_bytes(), key)
        assert not parsed.warnings
        total += parsed.tables["system_metrics"].num_rows
    assert total == job.rows

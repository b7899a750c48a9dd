"""Bad input never loses the good data: a binary file named like a trace is a counted skip
with its reason (like a truncated one), a JSON file that is no trace is only ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

from analyzer.ingest import ingest
from analyzer.sources import open_source

SAMPLE_TRACES = (
    Path(__file__).resolve().parents[1] / "samples" / "sample-job"
)  # the launcher's layout


def test_binary_and_empty_traces_are_counted_skips(tmp_path: Path) -> None:
    job = tmp_path / "job" / "tensorboard"
    job.mkdir(parents=True)
    good = next(SAMPLE_TRACES.glob("*rank0*.pt.trace.json.gz"))
    shutil.copy(good, job / good.name)
    (job / "host_rank1.1.pt.trace.json").write_bytes(bytes(range(256)) * 8)  # binary
    (job / "host_rank2.2.pt.trace.json").write_bytes(b"")
    (job / "notes.json").write_text('{"comment": "not a trace"}')
    # named as PyTorch's handler names traces, yet JSON with no traceEvents (a truncated or
    # overwritten trace): damaged, so a skip; the same content under another name is ignored
    (job / "host_rank3.3.pt.trace.json").write_text('{"schemaVersion": 1, "deviceProp')

    res = ingest(open_source(str(tmp_path / "job")), cache_dir=tmp_path / "cache")
    reasons = {Path(s["path"]).name: s["reason"] for s in res.summary["skipped"]}
    assert reasons == {
        "host_rank1.1.pt.trace.json": "not JSON: binary content",
        "host_rank2.2.pt.trace.json": "not JSON: the file is empty",
        "host_rank3.3.pt.trace.json": "named as a PyTorch trace, but not a Chrome/Kineto trace "
        "(no traceEvents)",
    }
    assert res.summary["ignored"] == 1  # notes.json
    assert res.dataset.table("kineto_traces").num_rows == 1  # the good trace is kept
    assert res.dataset.table("steps").num_rows > 0

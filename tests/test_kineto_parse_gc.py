"""The Kineto parser pauses Python's cyclic garbage collector while it decodes a trace, in the
processes that only parse (about 40 % of a parse went to collections over short-lived
objects that form no cycles). The pause must never outlive the parses: the collector is
back to the state it was in after concurrent parses in threads, after a parse that fails,
and it stays off for a caller that had it off; a caller's own process never pauses.
"""

from __future__ import annotations

import gc
import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from analyzer.ingest.kineto import parse_kineto
from analyzer.ingest.parsed import UnreadableFile

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample-job"


@pytest.fixture
def trace() -> tuple[bytes, str]:
    path = sorted(SAMPLE.glob("*.pt.trace.json.gz"))[0]
    return path.read_bytes(), path.name


@pytest.fixture(autouse=True)
def _restore_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test as a parse worker process (where the pause applies), gc state restored."""
    import analyzer.ingest.kineto as kineto

    monkeypatch.setattr(kineto, "_PAUSE_GC", True)
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_gc_is_on_again_after_concurrent_parses(trace: tuple[bytes, str]) -> None:
    gc.enable()
    data, key = trace
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: parse_kineto(data, key), range(8)))
    assert gc.isenabled()
    assert (
        len({r.tables["kineto_events"].num_rows for r in results}) == 1
    )  # the same answer each time
    assert results[0].tables["kineto_events"].num_rows > 0


def test_gc_is_on_again_after_a_parse_that_fails(trace: tuple[bytes, str]) -> None:
    gc.enable()
    with pytest.raises(UnreadableFile):
        parse_kineto(b"\x00\x01 not json at all", "x.pt.trace.json")
    whole = gzip.decompress(trace[0])
    with pytest.raises(UnreadableFile):  # truncated JSON: refused mid-decode
        parse_kineto(whole[: len(whole) // 2], "cut.pt.trace.json")
    assert gc.isenabled()


def test_a_caller_that_had_gc_off_keeps_it_off(trace: tuple[bytes, str]) -> None:
    gc.disable()
    data, key = trace
    parse_kineto(data, key)
    assert not gc.isenabled()


def _gc_during_build(trace: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector was on while the parse built its tables (one parse, gc on before)."""
    import analyzer.ingest.kineto as kineto

    seen: list[bool] = []
    real = kineto._build

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(kineto, "_build", spy)
    gc.enable()
    parse_kineto(*trace)
    return seen


def test_gc_is_off_while_a_parse_runs(
    trace: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pause is for: no collection during the decode and the build."""
    assert _gc_during_build(trace, monkeypatch) == [False] and gc.isenabled()


def test_a_callers_own_process_keeps_its_collector(
    trace: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause is process-wide, so a process that does more than parse (the command's own,
    a dashboard server with other threads) never pauses: only parse workers do."""
    import analyzer.ingest.kineto as kineto

    monkeypatch.setattr(kineto, "_PAUSE_GC", False)
    assert _gc_during_build(trace, monkeypatch) == [True]


def test_parse_worker_processes_pause_it() -> None:
    """The local pool's initializer and the Dask task both switch the pause on."""
    import subprocess
    import sys

    code = (
        "import analyzer.ingest.kineto as k, analyzer.ingest.pipeline as p; a = k._PAUSE_GC; "
        "p._parse_worker_init(); print(a, k._PAUSE_GC)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True"]

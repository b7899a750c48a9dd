"""The system-metrics sampler writes what SageMaker Debugger writes, and never stops.

Real parts throughout: psutil reads this machine, ``stepscope ingest`` (analyzer.ingest)
reads the files back and the built-in rules judge them. Only what this machine lacks is
stood in for: GPUs (an object with pynvml's functions), an RDMA device (a sysfs tree in a
temporary folder), and, for the minute rollover, the wall clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import psutil
import pytest

from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from stepscope.collectors import identity
from stepscope.collectors.nvml import GPU_DIMENSIONS
from stepscope.collectors.system import LOG_PREFIX, SystemSampler, minute_file

REPO = Path(__file__).resolve().parents[1]
FIELDS = ["Type", "Name", "Dimension", "Value", "NodeId", "Timestamp"]


class StandInNvml:
    """pynvml's calls the sampler makes, for ``gpus`` idle GPUs; ``unsupported`` names
    functions that raise NVMLError_NotSupported, ``failing`` ones that raise another error."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # pynvml's spelling
        pass

    def __init__(
        self,
        gpus: int = 2,
        *,
        util: float = 0.0,
        unsupported: tuple[str, ...] = (),
        failing: tuple[str, ...] = (),
    ) -> None:
        self.gpus, self.util = gpus, util
        self.unsupported, self.failing = unsupported, failing
        self.calls: Tally[str] = Tally()
        self.shut_down = False

    def _call(self, fn: str) -> None:
        self.calls[fn] += 1
        if fn in self.unsupported:
            raise self.NVMLError_NotSupported("Not Supported")
        if fn in self.failing:
            raise self.NVMLError("Unknown Error")

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        self._call("nvmlDeviceGetUtilizationRates")
        return type("Util", (), {"gpu": self.util + h, "memory": 1})()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        self._call("nvmlDeviceGetMemoryInfo")
        return type("Mem", (), {"used": 20 * 2**30, "total": 80 * 2**30, "free": 60 * 2**30})()

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return 71_500  # mW

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        self._call("nvmlDeviceGetClockInfo")
        assert kind == self.NVML_CLOCK_SM
        return 1410

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        return 34


def _records(out: Path) -> list[dict[str, Any]]:
    recs = []
    for path in sorted(out.rglob("*.json")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            assert list(rec) == FIELDS, rec
            recs.append(rec)
    return recs


def _ingest(out: Path, cache: Path) -> Any:
    result = ingest(open_source(str(out)), cache_dir=cache)
    assert result.summary["skipped"] == [] and result.summary["warnings"] == []
    return result


def _log_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(LOG_PREFIX)]


@pytest.fixture
def busy_core() -> Any:
    """A process spinning on one core: a CPU bottleneck the sampler must see."""
    core = min(os.sched_getaffinity(0))
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"]
    )
    time.sleep(0.3)
    yield
    proc.kill()
    proc.wait()


def test_sampler_output_is_ingested_and_judged(tmp_path: Path, busy_core: None) -> None:
    """A few seconds of real sampling (idle stand-in GPUs, one core saturated): ingest finds
    the node and SageMaker's dimensions, and CPUBottleneck fires on that node."""
    out = tmp_path / "job"
    nvml = StandInNvml(gpus=2)
    sampler = SystemSampler(
        out, 0.25, node="algo-7", nvml=nvml, infiniband_root=tmp_path / "none"
    ).start()
    time.sleep(3.0)
    sampler.stop()
    assert sampler.samples >= 8
    assert nvml.shut_down
    assert [p.relative_to(out).parts[:2] for p in sampler.files] == [
        ("system", "incremental")
    ] * len(sampler.files)

    result = _ingest(out, tmp_path / "cache")
    assert result.summary["node_names"] == ["algo-7"]
    sm = result.dataset.table("system_metrics")
    dims = Tally(
        zip(sm.column("type").to_pylist(), sm.column("dimension").to_pylist(), strict=True)
    )
    cores = len(psutil.cpu_times(percpu=True))
    samples = dims[("memory", "")]
    assert samples == sampler.samples
    assert dims[("cpu", "CPUUtilization")] == dims[("cpu", "I/OWaitPercentage")] == samples * cores
    assert dims[("i/o", "")] == 3 * samples
    assert dims[("network", "Algorithm")] == dims[("network", "Platform")] == 2 * samples
    for dim in GPU_DIMENSIONS:
        assert dims[("gpu", dim)] == 2 * samples, dim
    gpus = {
        d
        for d, t in zip(sm.column("device").to_pylist(), sm.column("type").to_pylist(), strict=True)
        if t == "gpu"
    }
    assert gpus == {"gpu0", "gpu1"}
    values: dict[str, set[float]] = {}
    for r in sm.to_pylist():
        values.setdefault(r["dimension"], set()).add(r["value"])
    assert values["GPUMemoryUtilization"] == {25.0} and values["GPUPowerInWatts"] == {
        71.5
    }  # 20 of 80 GiB; mW
    assert values["GPUUtilization"] == {0.0, 1.0} and values["GPUSMClockInMHz"] == {1410.0}
    assert all(0 <= v <= 100 for v in values["CPUUtilization"] | values["I/OWaitPercentage"])

    rules = load_ruleset(_rules_file(tmp_path, "[rules.CPUBottleneck]\npatience = 2\n"))
    by_rule = {r.rule: r for r in evaluate(Job(result.dataset), rules)}
    cpu = by_rule["CPUBottleneck"]
    assert cpu.skipped_reason is None and cpu.error is None
    assert [f.evidence["node"] for f in cpu.findings] == ["algo-7"], cpu.findings
    assert cpu.findings[0].evidence["share_pct"] > 80
    io = by_rule["IOBottleneck"]
    assert io.skipped_reason is None and io.error is None  # judged (its patience is not reached)


def _rules_file(tmp: Path, text: str) -> Path:
    path = tmp / "rules.toml"
    path.write_text(text)
    return path


def test_node_defaults_to_identity(tmp_path: Path) -> None:
    sampler = SystemSampler(tmp_path, nvml=None)
    assert sampler.node == identity.node_name()


def test_without_nvml_one_line_and_cpu_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No nvidia-ml-py, or no NVML library (this machine's own pynvml when it has no
    driver): one line on stderr, and CPU rows go on being written."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        cases: list[Any] = [None, pynvml]
    else:
        pynvml.nvmlShutdown()
        cases = [None]  # a GPU machine: only the not-installed case can be shown here
    for i, nvml in enumerate(cases):
        out = tmp_path / f"out{i}"
        sampler = SystemSampler(out, node="algo-1", nvml=nvml, infiniband_root=tmp_path / "none")
        for _ in range(4):
            sampler.sample_once()
            time.sleep(0.05)
        sampler.close()
        lines = _log_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "no NVML" in lines[0], lines
        recs = _records(out)
        assert not [r for r in recs if r["Type"] == "gpu"]
        assert {r["Timestamp"] for r in recs if r["Dimension"] == "CPUUtilization"}, "no CPU rows"


def test_infiniband_tree_gives_efa_rows(tmp_path: Path) -> None:
    """EFA's hw_counters count bytes, InfiniBand's port counters 4-byte words; both come
    out as bytes per second, per device and port, over the clock's interval."""
    ib = tmp_path / "infiniband"
    efa = ib / "rdmap16s27" / "ports" / "1" / "hw_counters"
    hca = ib / "mlx5_0" / "ports" / "1" / "counters"
    efa.mkdir(parents=True)
    hca.mkdir(parents=True)
    (ib / "nodevice").mkdir()  # a device without ports is passed over

    def counters(efa_rx: int, efa_tx: int, words_rx: int, words_tx: int) -> None:
        (efa / "rx_bytes").write_text(f"{efa_rx}\n")
        (efa / "tx_bytes").write_text(f"{efa_tx}\n")
        (hca / "port_rcv_data").write_text(f"{words_rx}\n")
        (hca / "port_xmit_data").write_text(f"{words_tx}\n")

    now = [1_800_000_000.0]
    out = tmp_path / "job"
    sampler = SystemSampler(
        out,
        node="algo-2",
        nvml=None,
        psutil=None,
        infiniband_root=ib,
        clock=lambda: now[0],
        log=lambda _: None,
    )
    counters(10_000, 20_000, 1_000, 2_000)
    assert sampler.sample_once() == 0  # a rate needs two readings
    now[0] += 2.0
    counters(10_000 + 6_000_000, 20_000 + 2_000_000, 1_000 + 500_000, 2_000 + 250_000)
    assert sampler.sample_once() == 4
    sampler.close()

    sm = _ingest(out, tmp_path / "cache").dataset.table("system_metrics").to_pylist()
    got = {(r["node"], r["type"], r["device"], r["dimension"]): r["value"] for r in sm}
    assert got == {
        ("algo-2", "efa", "mlx5_0:1", "EFAReceiveBytesPerSecond"): 500_000 * 4 / 2.0,
        ("algo-2", "efa", "mlx5_0:1", "EFATransmitBytesPerSecond"): 250_000 * 4 / 2.0,
        ("algo-2", "efa", "rdmap16s27:1", "EFAReceiveBytesPerSecond"): 3_000_000.0,
        ("algo-2", "efa", "rdmap16s27:1", "EFATransmitBytesPerSecond"): 1_000_000.0,
    }


def test_failing_counters_do_not_stop_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A built-in reading that raises (psutil's disk counters), an added counter that
    raises, a GPU field that is unsupported and one that fails: one line each, and every
    other metric keeps its rows in every sample."""
    import psutil

    class BrokenDisks:
        def __getattr__(self, name: str) -> Any:
            return getattr(psutil, name)

        def disk_io_counters(self, **kw: Any) -> Any:
            raise PermissionError("/proc/diskstats: permission denied")

    class Exploding:
        name = "exploding"

        def read(self, now: float) -> list[Any]:
            raise RuntimeError("boom")

    nvml = StandInNvml(
        gpus=2, unsupported=("nvmlDeviceGetPowerUsage",), failing=("nvmlDeviceGetTemperature",)
    )
    out = tmp_path / "job"
    sampler = SystemSampler(
        out,
        0.2,
        node="algo-1",
        nvml=nvml,
        psutil=BrokenDisks(),
        infiniband_root=tmp_path / "none",
        extra_counters=[Exploding()],
    ).start()
    time.sleep(1.5)
    sampler.stop()
    lines = _log_lines(capsys.readouterr().err)
    assert len(lines) == 4, lines
    assert sum("i/o metrics failed" in x and "PermissionError" in x for x in lines) == 1
    assert sum("exploding metrics failed" in x and "boom" in x for x in lines) == 1
    assert sum("GPUPowerInWatts" in x for x in lines) == 1
    assert sum("GPUTemperatureInCelsius" in x for x in lines) == 1

    recs = _records(out)
    per_dim = Tally((r["Type"], r["Dimension"]) for r in recs)
    samples = per_dim[("memory", "")]
    assert samples == sampler.samples >= 5
    cores = len(psutil.cpu_times(percpu=True))
    assert per_dim[("cpu", "CPUUtilization")] == samples * cores
    assert per_dim[("network", "Platform")] == 2 * samples
    assert per_dim[("gpu", "GPUUtilization")] == per_dim[("gpu", "GPUSMClockInMHz")] == 2 * samples
    assert ("i/o", "") not in per_dim and ("gpu", "GPUPowerInWatts") not in per_dim
    assert ("gpu", "GPUTemperatureInCelsius") not in per_dim
    # the unsupported field was asked once per GPU, the failing one every sample (it may recover)
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 2
    assert nvml.calls["nvmlDeviceGetTemperature"] == 2 * (samples + 1)  # + the priming read


def test_new_file_each_minute(tmp_path: Path) -> None:
    """Samples each side of a minute (here also an hour) boundary land in that minute's
    file of that hour's folder; a sample is never split across two files."""
    minute = 1_800_003_540  # an hh:59 minute, so the next one is in the next hour's folder
    assert minute % 3600 == 3540
    times = [minute + 58.9, minute + 59.4, minute + 59.95, minute + 60.4, minute + 60.9]
    now = [0.0]
    out = tmp_path / "job"
    sampler = SystemSampler(
        out,
        node="algo-1",
        nvml=StandInNvml(gpus=1),
        infiniband_root=tmp_path / "none",
        clock=lambda: now[0],
    )
    for t in times:
        now[0] = t
        sampler.sample_once()
    sampler.close()
    first, second = minute_file(out, minute, "algo-1"), minute_file(out, minute + 60, "algo-1")
    assert sampler.files == [first, second]
    assert first.parent.name == time.strftime("%Y%m%d%H", time.gmtime(minute))
    assert (
        second.parent.name
        == time.strftime("%Y%m%d%H", time.gmtime(minute + 60))
        != first.parent.name
    )
    for path, lo in ((first, minute), (second, minute + 60)):
        stamps = {json.loads(line)["Timestamp"] for line in path.read_text().splitlines()}
        assert all(lo <= t < lo + 60 for t in stamps), (path, stamps)
    assert {json.loads(x)["Timestamp"] for x in first.read_text().splitlines()} == set(times[:3])
    # closed and sampled again within the minute: appended to that minute's file
    now[0] = times[-1] + 0.05
    sampler.sample_once()
    sampler.close()
    assert sampler.files == [first, second]
    assert {json.loads(x)["Timestamp"] for x in second.read_text().splitlines()} == {
        *times[3:],
        now[0],
    }
    sm = _ingest(out, tmp_path / "cache").dataset.table("system_metrics")
    assert sm.num_rows == len(_records(out))


def test_a_failed_write_is_logged_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host's mistakes (a bad interval, an output path that is a file) are logged once,
    never raised into it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sampler = SystemSampler(
        blocker,
        "fast",  # type: ignore[arg-type]
        node="algo-1",
        nvml=None,
        infiniband_root=tmp_path / "none",
    )
    assert sampler.interval_s == 0.5
    for _ in range(3):
        sampler.sample_once()
    sampler.stop()
    lines = _log_lines(capsys.readouterr().err)
    assert any("interval" in x for x in lines) and sum("cannot write" in x for x in lines) == 1, (
        lines
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """``python -m stepscope.collectors.system`` samples until the signal, exits 0, and
    leaves only whole records."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stepscope.collectors.system",
            "--out",
            str(out),
            "--interval-ms",
            "100",
            "--node",
            "algo-3",
            "--infiniband-root",
            str(tmp_path / "none"),
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and sum(1 for r in _safe_records(out) if r["Dimension"] == "CPUUtilization") < 3
        ):
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    recs = _records(out)  # every line parses: no torn record
    assert {r["NodeId"] for r in recs} == {"algo-3"}
    assert sum(r["Dimension"] == "CPUUtilization" for r in recs) >= 3
    assert all(line.startswith(LOG_PREFIX) for line in err.splitlines()), err


def _safe_records(out: Path) -> list[dict[str, Any]]:
    recs = []
    for path in out.rglob("*.json"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                recs.append(json.loads(line))
    return recs


def test_imports_nothing_heavy() -> None:
    """The sampler runs in the training container: importing it pulls in none of the
    analysis stack (the layering test checks the source; this checks the interpreter)."""
    code = (
        "import sys, stepscope.collectors.system\n"
        "heavy = ('pandas', 'pyarrow', 'numpy', 'plotly', 'streamlit', 'boto3', 'pydantic', "
        "'analyzer', 'rules')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

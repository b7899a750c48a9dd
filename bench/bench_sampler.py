"""System-sampler overhead: CPU time per sample, as a share of one core.

    .venv/bin/python bench/bench_sampler.py [--seconds 10] [--interval-ms 500] \\
        [--cores 96] [--gpus 8] [--efa-ports 4]

Goal (issue 11): under 1 % of one core at 500 ms on a node with 8 GPUs and 96 cores.

1. **This machine, as deployed**: ``SystemSampler`` on its thread for ``--seconds``,
   reading the real /proc, NVML (when there is a GPU) and /sys/class/infiniband. The
   process's CPU time (all threads; the main thread only sleeps) over the samples taken.
2. **The target node**, which this machine is not, so each per-core and per-device cost is
   paid for real on stand-ins of the target's size: psutil reads a /proc whose ``stat``
   has ``--cores`` CPU lines (advanced between samples like a busy node's), the sampler
   formats and writes every row, NVML is a stand-in object with ``--gpus`` GPUs, and EFA
   counters are files of a fake sysfs tree with ``--efa-ports`` ports. The sampler runs on
   its thread at its real cadence, as in 1. (a tight loop of ``sample_once()`` would run
   on warm caches and show about a third of the real cost); the stand-ins' own upkeep is
   timed and taken out.
   What a stand-in cannot show is NVML's own time in the driver. With a GPU here it is
   measured (the real calls, per call) and added; without one it is printed separately
   as a range, not folded into the figure.

Results go to ``.bench/sampler.json`` and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from stepscope.collectors.nvml import GPU_DIMENSIONS, NvmlCounter, load_pynvml  # noqa: E402
from stepscope.collectors.system import SystemSampler  # noqa: E402

GOAL_PCT = 1.0
NVML_CALLS_PER_GPU = len(GPU_DIMENSIONS)  # one NVML call per value


def pct_of_core(cpu_s_per_sample: float, interval_s: float) -> float:
    return cpu_s_per_sample / interval_s * 100.0


# --------------------------------------------------------------------------- 1. this machine


def real_nvml() -> Any | None:
    nv = load_pynvml()
    if nv is None:
        return None
    try:
        nv.nvmlInit()
        nv.nvmlShutdown()
    except Exception:
        return None
    return nv


def measure_here(seconds: float, interval_s: float, tmp: Path) -> dict[str, Any]:
    """Steady state: from the first written sample on. Opening the sources (importing
    psutil and pynvml, loading NVML) is paid once at start and reported apart."""
    sampler = SystemSampler(tmp / "here", interval_s, node="bench", log=lambda _: None)
    c_start = time.process_time()
    sampler.start()
    while sampler.samples < 1:
        time.sleep(0.005)
    c0, n0, t0 = time.process_time(), sampler.samples, time.monotonic()
    time.sleep(seconds)
    c1, n1, t1 = time.process_time(), sampler.samples, time.monotonic()
    sampler.stop()
    rows = sum(len(p.read_text().splitlines()) for p in sampler.files)
    per = (c1 - c0) / max(n1 - n0, 1)
    return {
        "cores": len(psutil.cpu_times(percpu=True)),
        "gpus": _gpu_count(real_nvml()),
        "samples": n1 - n0,
        "rows_per_sample": rows / max(sampler.samples, 1),
        "wall_s": round(t1 - t0, 2),
        "start_cpu_ms": round((c0 - c_start) * 1e3, 1),
        "cpu_ms_per_sample": round(per * 1e3, 3),
        "pct_of_one_core": round(pct_of_core(per, interval_s), 3),
    }


def _gpu_count(nv: Any | None) -> int:
    if nv is None:
        return 0
    nv.nvmlInit()
    try:
        return int(nv.nvmlDeviceGetCount())
    finally:
        nv.nvmlShutdown()


def nvml_seconds_per_call(nv: Any, reads: int = 200) -> float | None:
    """Process CPU time of the real NVML calls, per call (GPU machines only)."""
    counter = NvmlCounter(nv, lambda *_: None)
    if not counter.open() or counter.gpus == 0:
        return None
    try:
        counter.read(0.0)
        c0 = time.process_time()
        for _ in range(reads):
            counter.read(0.0)
        return (time.process_time() - c0) / (reads * counter.gpus * NVML_CALLS_PER_GPU)
    finally:
        counter.close()


# --------------------------------------------------------------------------- 2. the target node


class StandInNvml:
    """pynvml's calls, answered from Python: the sampler's own per-GPU work, no driver."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    class _Util:
        gpu, memory = 87, 40

    class _Mem:
        used, total, free = 61 * 2**30, 80 * 2**30, 19 * 2**30

    def __init__(self, gpus: int) -> None:
        self.gpus = gpus

    def nvmlInit(self) -> None: ...

    def nvmlShutdown(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._Util

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._Mem

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 312_000

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        return 1410

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 51


class FakeProc:
    """A /proc for psutil (``psutil.PROCFS_PATH``) with ``cores`` CPUs; ``advance()`` moves
    every core's jiffies on, so each sample computes and writes every core's rows."""

    def __init__(self, root: Path, cores: int) -> None:
        self.root, self.cores, self.tick = root, cores, 0
        (root / "net").mkdir(parents=True)
        for name in ("meminfo", "diskstats", "net/dev"):
            shutil.copyfile(f"/proc/{name}", root / name)
        self.advance()

    def advance(self) -> None:
        self.tick += 1
        t = self.tick
        # user nice system idle iowait irq softirq steal guest guest_nice, jiffies
        lines = [
            f"cpu{i} {30 * t + i} {t} {8 * t} {10 * t + i % 7} {t % 3} 0 {t} 0 0 0"
            for i in range(self.cores)
        ]
        total = "cpu " + " ".join(
            str(sum(int(x) for x in col))
            for col in zip(*(ln.split()[1:] for ln in lines), strict=True)
        )
        (self.root / "stat").write_text(
            "\n".join([total, *lines, "intr 0", "ctxt 0", "btime 0", ""])
        )


def fake_infiniband(root: Path, ports: int) -> Path:
    for i in range(ports):
        hw = root / f"rdmap{16 + i}s27" / "ports" / "1" / "hw_counters"
        hw.mkdir(parents=True)
        (hw / "rx_bytes").write_text("0\n")
        (hw / "tx_bytes").write_text("0\n")
    return root


def advance_infiniband(root: Path, tick: int) -> None:
    for f in root.glob("*/ports/1/hw_counters/*_bytes"):
        f.write_text(f"{tick * 12_500_000_000}\n")


class Advance:
    """Read last each sample, moves the stand-ins on for the next one; its own CPU time is
    taken out of the figure."""

    name = "bench-advance"

    def __init__(self, proc: FakeProc, ib: Path) -> None:
        self.proc, self.ib, self.cpu_s = proc, ib, 0.0

    def read(self, now: float) -> list[Any]:
        c0 = time.process_time()
        self.proc.advance()
        advance_infiniband(self.ib, self.proc.tick)
        self.cpu_s += time.process_time() - c0
        return []


def measure_target(
    cores: int, gpus: int, efa_ports: int, seconds: float, interval_s: float, tmp: Path
) -> dict[str, Any]:
    """The sampler on its thread, as deployed, over stand-ins of the target's size."""
    proc = FakeProc(tmp / "proc", cores)
    ib = fake_infiniband(tmp / "infiniband", efa_ports)
    advance = Advance(proc, ib)
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(proc.root)
    try:
        assert len(psutil.cpu_times(percpu=True)) == cores
        sampler = SystemSampler(
            tmp / "target",
            interval_s,
            node="algo-1",
            nvml=StandInNvml(gpus),
            infiniband_root=ib,
            extra_counters=[advance],
            log=lambda _: None,
        )
        sampler.start()
        while sampler.samples < 1:
            time.sleep(0.005)
        c0, n0, a0 = time.process_time(), sampler.samples, advance.cpu_s
        time.sleep(seconds)
        c1, n1, a1 = time.process_time(), sampler.samples, advance.cpu_s
        sampler.stop()
    finally:
        psutil.PROCFS_PATH = saved
    samples = n1 - n0
    per = ((c1 - c0) - (a1 - a0)) / max(samples, 1)
    expected = 1 + 3 + 2 * cores + 4 + gpus * NVML_CALLS_PER_GPU + 2 * efa_ports
    rows = sum(len(p.read_text().splitlines()) for p in sampler.files)
    assert rows == sampler.samples * expected, (rows / sampler.samples, expected)
    return {
        "cores": cores,
        "gpus": gpus,
        "efa_ports": efa_ports,
        "samples": samples,
        "rows_per_sample": expected,
        "cpu_ms_per_sample": round(per * 1e3, 3),
        "pct_of_one_core": round(pct_of_core(per, interval_s), 3),
        "nvml_calls_per_sample": gpus * NVML_CALLS_PER_GPU,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="how long each of the two runs samples"
    )
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--cores", type=int, default=96)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument(
        "--efa-ports", type=int, default=4, help="p4d.24xlarge has 4 EFA devices, p5.48xlarge 32"
    )
    a = ap.parse_args(argv)
    interval = a.interval_ms / 1000.0

    with tempfile.TemporaryDirectory(prefix="stepscope-bench-sampler-") as d:
        tmp = Path(d)
        here = measure_here(a.seconds, interval, tmp)
        target = measure_target(a.cores, a.gpus, a.efa_ports, a.seconds, interval, tmp)
    nv = real_nvml()
    per_call = nvml_seconds_per_call(nv) if nv is not None else None
    calls = target["nvml_calls_per_sample"]
    result: dict[str, Any] = {
        "interval_ms": a.interval_ms,
        "goal_pct_of_one_core": GOAL_PCT,
        "this_machine": here,
        "target": target,
    }

    print(f"System sampler overhead at {a.interval_ms} ms (goal: < {GOAL_PCT} % of one core)")
    print(
        f"  this machine ({here['cores']} cores, {here['gpus']} GPUs, real sources): "
        f"{here['cpu_ms_per_sample']:.3f} ms CPU per sample, {here['rows_per_sample']:.0f} rows "
        f"-> {here['pct_of_one_core']:.3f} % of one core ({here['samples']} samples; "
        f"{here['start_cpu_ms']:.0f} ms once at start)"
    )
    print(
        f"  {a.cores} cores + {a.gpus} GPUs + {a.efa_ports} EFA ports "
        f"(stand-ins, {target['rows_per_sample']} rows): "
        f"{target['cpu_ms_per_sample']:.3f} ms CPU per sample -> "
        f"{target['pct_of_one_core']:.3f} % of one core"
    )
    if per_call is not None:
        total = target["cpu_ms_per_sample"] / 1e3 + calls * per_call
        result["nvml_us_per_call_measured"] = round(per_call * 1e6, 2)
        result["target_pct_with_nvml"] = round(pct_of_core(total, interval), 3)
        print(
            f"  + NVML driver time measured here, {per_call * 1e6:.1f} us a call x {calls} calls: "
            f"{result['target_pct_with_nvml']:.3f} % of one core"
        )
    else:
        extra = {us: round(pct_of_core(calls * us / 1e6, interval), 3) for us in (10, 50, 100)}
        result["nvml_driver_pct_if_us_per_call"] = extra
        print(
            f"  + NVML's driver time, not measurable without a GPU: {calls} calls per sample; "
            + ", ".join(f"at {us} us a call +{pct:.2f} %" for us, pct in extra.items())
        )
    bench_dir = REPO / ".bench"
    bench_dir.mkdir(exist_ok=True)
    (bench_dir / "sampler.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

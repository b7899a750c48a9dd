"""The report.json golden cases: what the architecture step (issue 10) must leave unchanged.

Each case is a source (and optional baseline) judged with the default rules; its report,
normalised (no timestamp, no version, no machine-specific paths), is compared with the JSON
captured in ``tests/golden/`` before the change. ``python -m tests.support.golden --write``
re-captures them, for a change that is *meant* to alter the report.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.support.fixtures import find_fixtures

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "golden"
KINETO = ["nccl_2rank_rank0", "sampled_128rank", "resnet_single", "alexnet_single", "cpu_only"]
#: fields that differ on every run by design
VOLATILE = ("generated_at", "stepscope_version")


def generated_jobs(work: Path) -> tuple[Path, Path]:
    """A healthy 2-node job and a sick 5-node one (one pattern per node), deterministic."""
    from tests.support.synthetic import (
        CPUBottleneck,
        GPUMemoryGrowth,
        IOBottleneck,
        LowGPU,
        StalledNode,
        generate_system_metrics,
    )

    healthy, sick = work / "gen-healthy", work / "gen-sick"
    if not healthy.exists():
        generate_system_metrics(healthy, nodes=2, gpus=2, cpus=4, minutes=12, seed=11)
    if not sick.exists():
        generate_system_metrics(
            sick,
            nodes=5,
            gpus=2,
            cpus=4,
            minutes=12,
            seed=12,
            patterns=[
                LowGPU(1, 0, 60, 500),
                CPUBottleneck(2, 100, 600),
                IOBottleneck(3, 100, 600),
                GPUMemoryGrowth(4, 1, 50, 500, 20, 90),
                StalledNode(5, 200, 700),
            ],
        )
    return healthy, sick


def cases(work: Path) -> dict[str, tuple[str, str | None]]:
    """case name -> (source, baseline). Fixture cases only where the fixtures are."""
    healthy, sick = generated_jobs(work)
    out: dict[str, tuple[str, str | None]] = {
        "sample-job": (str(REPO / "samples" / "sample-job"), None),
        "sample-vs-baseline": (
            str(REPO / "samples" / "sample-job"),
            str(REPO / "samples" / "sample-baseline"),
        ),
        "generated-sick": (str(sick), None),
        "generated-baseline": (str(sick), str(healthy)),
    }
    fx = find_fixtures()
    if fx is not None:
        out["debugger-test-traces"] = (str(fx / "sagemaker-debugger" / "test_traces"), None)
        for k in KINETO:
            out[f"kineto-{k}"] = (str(fx / "kineto" / k), None)
    return out


def normalise(report: dict[str, Any], work: Path) -> dict[str, Any]:
    """Drop the volatile fields and replace this machine's paths by placeholders."""
    fx = find_fixtures()
    swaps = [(str(work), "<work>"), (str(REPO), "<repo>")]
    if fx is not None:
        swaps.insert(0, (str(fx.resolve()), "<fixtures>"))
        swaps.insert(1, (str(fx), "<fixtures>"))

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items() if k not in VOLATILE}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            for a, b in swaps:
                v = v.replace(a, b)
            return v
        return v

    return walk(report)  # type: ignore[no-any-return]


def run_report(
    source: str, baseline: str | None, out: Path, cache: Path
) -> tuple[int, dict[str, Any]]:
    """``stepscope report`` as CI runs it (fail-on warning), in a fresh process."""
    cmd = [
        sys.executable,
        "-m",
        "stepscope",
        "report",
        source,
        "--out",
        str(out),
        "--format",
        "json",
        "--fail-on",
        "warning",
        "--cache",
        str(cache),
        "-q",
    ]
    if baseline:
        cmd += ["--baseline", baseline]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"stepscope report {source} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.returncode, orjson.loads((out / "report.json").read_bytes())


def write(work: Path, echo: Callable[[str], None] = print) -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name, (src, base) in cases(work).items():
        rc, rep = run_report(src, base, work / "out" / name, work / "cache")
        doc = {"exit_code": rc, "report": normalise(rep, work)}
        (GOLDEN_DIR / f"{name}.json").write_bytes(
            orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
        echo(f"{name}: exit {rc}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--write", action="store_true", required=True, help="re-capture tests/golden/*.json"
    )
    ap.add_argument(
        "--work", default="/tmp/stepscope-golden", help="scratch folder for the generated jobs"
    )
    write(Path(ap.parse_args().work))

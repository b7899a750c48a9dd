"""Health-hook files (the ``stepscope run --health`` JSON lines, docs/training-health.md)
written with exactly the pathologies SageMaker Debugger's training rules look for."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0


def write_health(
    root: Path,
    node: str,
    rank: int,
    records: list[dict[str, Any]],
    tail: str = "",
    time_of: Callable[[int], float] | None = None,
) -> Path:
    """``root/health/<node>_rank<R>.<pid>.health.jsonl``; each record's time is
    ``time_of(step)`` (default: a step a second). ``tail`` is appended raw (a torn line)."""
    d = root / "health"
    d.mkdir(parents=True, exist_ok=True)
    when = time_of or (lambda s: float(s))
    lines = [
        json.dumps({"v": 1, "node": node, "rank": rank, "time": T0 + when(r["step"]), **r})
        for r in records
    ]
    path = d / f"{node}_rank{rank}.{1000 + rank}.health.jsonl"
    path.write_text("\n".join(lines) + "\n" + tail)
    return path


def loss(steps: range, f: Callable[[int], float | None], tag: str = "loss") -> list[dict[str, Any]]:
    return [{"kind": "scalar", "step": s, "tag": tag, "value": f(s)} for s in steps]


def tensor(step: int, name: str, role: str, **stats: Any) -> dict[str, Any]:
    return {"kind": "tensor", "step": step, "name": name, "role": role, **stats}


def sick_training_job(root: Path) -> Path:
    """One worker with every pathology at once (each training rule fires on it): a flat
    loss that turns NaN, an evaluation loss far above it, a vanished gradient, a dead ReLU,
    a saturated sigmoid, an update 50x the weight, and an hour without a record."""
    recs = loss(range(1, 41), lambda s: 0.7 if s < 35 else None)
    recs += loss(range(10, 41, 10), lambda s: 2.0, tag="eval/loss")
    for s in range(1, 41):
        recs.append(
            tensor(
                s,
                "fc1.weight",
                "gradient",
                norm=1e-9,
                numel=4096,
                nan_count=0,
                inf_count=0,
                zero_fraction=0.0,
            )
        )
        recs.append(
            tensor(
                s,
                "net.1",
                "activation",
                module="ReLU",
                zero_fraction=1.0,
                min=0.0,
                max=0.0,
                numel=1024,
                nan_count=0,
                inf_count=0,
            )
        )
        recs.append(
            tensor(
                s,
                "net.3",
                "activation",
                module="Sigmoid",
                min=0.9999999999,
                max=1.0,
                numel=64,
                zero_fraction=0.0,
                nan_count=0,
                inf_count=0,
            )
        )
        recs.append(tensor(s, "fc1.weight", "update_ratio", value=50.0))
    write_health(root, "algo-1", 0, recs, time_of=lambda s: float(s) if s < 40 else 4000.0)
    return root

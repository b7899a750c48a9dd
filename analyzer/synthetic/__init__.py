"""Synthetic inputs in the exact on-disk formats smprof ingests.

Real SageMaker output of the size we must handle (many nodes, hours, 500 ms sampling) is not
something tests or benchmarks can download, so we generate it: same layout, same record
spellings, with known bottleneck patterns injected so analyses can be checked against a
ground truth.

Names resolve lazily so ``python -m analyzer.synthetic.system_metrics`` runs without the
module having been imported twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.synthetic.system_metrics import (
        CPUBottleneck,
        GeneratedJob,
        GPUMemoryGrowth,
        InjectedTruth,
        IOBottleneck,
        LowGPU,
        Pattern,
        StalledNode,
        generate_system_metrics,
        rows_per_sample,
    )

__all__ = [
    "CPUBottleneck",
    "GPUMemoryGrowth",
    "GeneratedJob",
    "IOBottleneck",
    "InjectedTruth",
    "LowGPU",
    "Pattern",
    "StalledNode",
    "generate_system_metrics",
    "rows_per_sample",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("analyzer.synthetic.system_metrics"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

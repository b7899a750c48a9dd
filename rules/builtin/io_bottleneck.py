"""IOBottleneck — SageMaker built-in rule, judged per node (SageMaker pools all nodes)."""

from __future__ import annotations

from typing import ClassVar

from analyzer.job import Job
from rules import params as p
from rules.base import Finding
from rules.builtin._bottleneck import evaluate_bottleneck


class IOBottleneck:
    id: ClassVar[str] = "IOBottleneck"
    title: ClassVar[str] = "GPUs idle while waiting on I/O"
    checks: ClassVar[str] = (
        "Per node: share of system snapshots where a GPU is under `gpu_threshold` % while a core's I/O wait "
        "is over `io_threshold` %, above `threshold` % once more than `patience` snapshots were seen."
    )
    why: ClassVar[str] = "The GPUs wait for storage or the network to deliver training data."
    recommendation: ClassVar[str] = (
        "Use FastFile or Pipe mode or FSx for Lustre instead of File mode, shard and prefetch the dataset, "
        "and store it in fewer, larger files."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.IOBottleneckParams

    def evaluate(self, job: Job, params: p.IOBottleneckParams) -> list[Finding] | str:
        return evaluate_bottleneck(
            self, job, resource="io", dimension="I/OWaitPercentage", resource_threshold=params.io_threshold, params=params
        )

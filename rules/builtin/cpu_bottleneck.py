"""CPUBottleneck — SageMaker built-in rule, judged per node (SageMaker pools all nodes)."""

from __future__ import annotations

from typing import ClassVar

from analyzer.job import Job
from rules import params as p
from rules.base import Finding
from rules.builtin._bottleneck import evaluate_bottleneck


class CPUBottleneck:
    id: ClassVar[str] = "CPUBottleneck"
    title: ClassVar[str] = "GPUs idle while CPUs are saturated"
    checks: ClassVar[str] = (
        "Per node: share of system snapshots where a GPU is under `gpu_threshold` % while a CPU core is "
        "over `cpu_threshold` %, above `threshold` % once more than `patience` snapshots were seen."
    )
    why: ClassVar[str] = "The GPUs wait for the CPU: preprocessing or data loading is the bottleneck."
    recommendation: ClassVar[str] = (
        "Move preprocessing off the training loop (more DataLoader workers, pre-computed features, "
        "GPU data augmentation) or choose an instance type with more vCPUs per GPU."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.CPUBottleneckParams

    def evaluate(self, job: Job, params: p.CPUBottleneckParams) -> list[Finding] | str:
        return evaluate_bottleneck(
            self, job, resource="cpu", dimension="CPUUtilization", resource_threshold=params.cpu_threshold, params=params
        )

"""The rules, in one place: every rule class, in report order.

Why one tuple: a rule's id, title, docs, parameters, severity and where it runs are its
class's attributes; the rule file (``rules.ruleset``), the docs page (``rules.docs``), the
attach side (``RuleSet.sagemaker_rules``) and the engine all read this tuple, so adding a
rule is one module and one line here. SageMaker's built-ins come first (those ``stepscope
report`` judges, then the two it only attaches), stepscope's own next, SageMaker Debugger's
training rules after them, the baseline comparison last.

Rule modules import ``rules.base``, ``rules.params`` and (for types) ``analyzer.job``, and
load analyses only when they evaluate: the attach side reads this registry without pandas.
"""

from __future__ import annotations

from rules.base import Rule
from rules.builtin.abort_at_exit import AbortAtExit
from rules.builtin.all_to_all_imbalance import AllToAllImbalance
from rules.builtin.all_zero import AllZero
from rules.builtin.allocator_memory_growth import AllocatorMemoryGrowth
from rules.builtin.baseline_regression import BaselineRegression
from rules.builtin.batch_size import BatchSize
from rules.builtin.collective_hang import CollectiveHang
from rules.builtin.cpu_bottleneck import CPUBottleneck
from rules.builtin.dataloader import Dataloader
from rules.builtin.dataloader_stall import DataLoaderStall
from rules.builtin.dead_relu import DeadRelu
from rules.builtin.exploding_tensor import ExplodingTensor
from rules.builtin.exposed_communication import ExposedCommunication
from rules.builtin.exposed_sharded_communication import ExposedShardedCommunication
from rules.builtin.gpu_memory_increase import GPUMemoryIncrease
from rules.builtin.gpu_starved_by_host import GPUStarvedByHost
from rules.builtin.io_bottleneck import IOBottleneck
from rules.builtin.job_failure import JobFailure
from rules.builtin.load_balancing import LoadBalancing
from rules.builtin.loss_not_decreasing import LossNotDecreasing
from rules.builtin.low_gpu_utilization import LowGPUUtilization
from rules.builtin.max_initialization_time import MaxInitializationTime
from rules.builtin.overall_system_usage import OverallSystemUsage
from rules.builtin.overfit import Overfit
from rules.builtin.overtraining import Overtraining
from rules.builtin.pipeline_bubble import PipelineBubble
from rules.builtin.poor_weight_initialization import PoorWeightInitialization
from rules.builtin.profiler_report import ProfilerReport
from rules.builtin.saturated_activation import SaturatedActivation
from rules.builtin.small_collectives import SmallCollectives
from rules.builtin.stalled_training_rule import StalledTrainingRule
from rules.builtin.step_outlier import StepOutlier
from rules.builtin.straggler_rank import StragglerRank
from rules.builtin.tensor_variance import TensorVariance
from rules.builtin.vanishing_gradient import VanishingGradient
from rules.builtin.weight_update_ratio import WeightUpdateRatio

RULES: tuple[type[Rule], ...] = (
    LowGPUUtilization,
    CPUBottleneck,
    IOBottleneck,
    GPUMemoryIncrease,
    LoadBalancing,
    BatchSize,
    StepOutlier,
    MaxInitializationTime,
    Dataloader,
    OverallSystemUsage,
    ProfilerReport,
    DataLoaderStall,
    StragglerRank,
    ExposedCommunication,
    ExposedShardedCommunication,
    PipelineBubble,
    AllToAllImbalance,
    SmallCollectives,
    GPUStarvedByHost,
    AllocatorMemoryGrowth,
    AbortAtExit,
    CollectiveHang,
    JobFailure,
    # SageMaker Debugger's training rules, judged from the job's training-health data
    LossNotDecreasing,
    Overfit,
    Overtraining,
    VanishingGradient,
    ExplodingTensor,
    WeightUpdateRatio,
    DeadRelu,
    SaturatedActivation,
    PoorWeightInitialization,
    AllZero,
    TensorVariance,
    StalledTrainingRule,
    BaselineRegression,
)

#: rule id -> rule class, in report order
BY_ID: dict[str, type[Rule]] = {r.id: r for r in RULES}

"""The rules stepscope evaluates, one module each (SageMaker's built-ins keep their names)."""

from rules.builtin.allocator_memory_growth import AllocatorMemoryGrowth
from rules.builtin.baseline_regression import BaselineRegression
from rules.builtin.batch_size import BatchSize
from rules.builtin.cpu_bottleneck import CPUBottleneck
from rules.builtin.dataloader import Dataloader
from rules.builtin.dataloader_stall import DataLoaderStall
from rules.builtin.exposed_communication import ExposedCommunication
from rules.builtin.gpu_memory_increase import GPUMemoryIncrease
from rules.builtin.gpu_starved_by_host import GPUStarvedByHost
from rules.builtin.io_bottleneck import IOBottleneck
from rules.builtin.load_balancing import LoadBalancing
from rules.builtin.low_gpu_utilization import LowGPUUtilization
from rules.builtin.max_initialization_time import MaxInitializationTime
from rules.builtin.step_outlier import StepOutlier
from rules.builtin.straggler_rank import StragglerRank

ALL_RULES = (
    LowGPUUtilization(),
    CPUBottleneck(),
    IOBottleneck(),
    GPUMemoryIncrease(),
    LoadBalancing(),
    BatchSize(),
    StepOutlier(),
    MaxInitializationTime(),
    Dataloader(),
    DataLoaderStall(),
    StragglerRank(),
    ExposedCommunication(),
    GPUStarvedByHost(),
    AllocatorMemoryGrowth(),
    BaselineRegression(),
)

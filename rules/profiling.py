"""Where the training-script helper used to live: ``from rules.profiling import profile_training``
in existing training scripts keeps working. New code imports
``stepscope.collectors.profiling`` (the collector-only wheel ships that, not ``rules``)."""

from stepscope.collectors.profiling import (
    DATA_LOADING_LABEL,
    SAGEMAKER_TENSORBOARD_DIR,
    TrainingProfiler,
    default_out_dir,
    on_sagemaker,
    profile_training,
    trace_host,
    trace_rank,
)

__all__ = [
    "DATA_LOADING_LABEL",
    "SAGEMAKER_TENSORBOARD_DIR",
    "TrainingProfiler",
    "default_out_dir",
    "on_sagemaker",
    "profile_training",
    "trace_host",
    "trace_rank",
]

"""The names of the job dataset's tables, in their documented order (schemas: ``schemas.py``).

A module of its own, without pyarrow, so that code which only counts or names tables
(a cache check, a summary) does not import the columnar stack.
"""

TABLE_NAMES: tuple[str, ...] = (
    "system_metrics",
    "framework_events",
    "kineto_events",
    "kineto_traces",
    "steps",
    "rule_reports",
    "rule_statuses",
    "training_scalars",
    "training_tensors",
    "process_exits",
    "hang_dumps",
    "fr_entries",
    "fr_groups",
    "hang_stacks",
    "job_logs",
    "window_fr_entries",
    "window_fr_groups",
)

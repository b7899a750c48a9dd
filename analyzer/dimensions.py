"""The parallel dimensions a process group can carry, in a module of their own.

Why here, at the package root, not beside :mod:`analyzer.analyses.parallelism`: the rule
file validates its ``[parallelism] groups`` against these names, reading the rule file
(``stepscope attach``) must not load pandas, and importing the analyses does.
"""

from __future__ import annotations

DIMENSIONS = ("data", "fsdp", "tensor", "pipeline", "expert", "context", "other")
DIMENSION_LABELS = {
    "data": "data parallel",
    "fsdp": "FSDP / ZeRO sharding",
    "tensor": "tensor parallel",
    "pipeline": "pipeline parallel",
    "expert": "expert parallel",
    "context": "context parallel",
    "other": "other",
}

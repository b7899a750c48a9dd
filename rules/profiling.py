"""Moved to :mod:`stepscope.collectors.profiling`; this name keeps ``from rules.profiling import
profile_training`` in existing training scripts working (the same module object). The
collector-only wheel ships only the new name."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("stepscope.collectors.profiling")

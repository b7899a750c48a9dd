"""Moved to :mod:`stepscope.attach.collectors`; this name keeps existing imports working (the
same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("stepscope.attach.collectors")

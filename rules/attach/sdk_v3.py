"""Moved to :mod:`stepscope.attach.sdk_v3`; this name keeps existing imports working (the
same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("stepscope.attach.sdk_v3")

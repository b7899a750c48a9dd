"""Keep pandas out of a process that only parses and caches.

Parsing needs no pandas, but Arrow imports it (about 2 s here) the first time it converts
Python objects, unless that import fails. ``stepscope ingest`` and the parse worker processes
turn it away, so a refresh of a running job's cache, or a worker's first file, costs a
fraction of a second instead of seconds. Only where pandas is not imported already.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not needed to parse profiler files", name=name)
        return None


def keep_pandas_out() -> None:
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())

"""What the dashboard is started on: one typed object that ``stepscope dashboard`` fills from
its options and the app reads back, parsed once.

Why here: the CLI and the dashboard are outputs that never import each other; both import
this. The CLI hands the object to the server child serialised (one JSON argument after
``--``), so there is no second parser to keep in step with the CLI's options.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from analyzer.errors import StepscopeError

#: the app's one argument (after ``streamlit run app.py --``)
OPTIONS_FLAG = "--options"


@dataclass(frozen=True)
class DashboardOptions:
    """The dashboard's job and settings (hashable: it keys the app's in-memory jobs)."""

    source: str
    cache_dir: str | None = None
    rules_file: str | None = None
    profile: str | None = None
    region: str | None = None
    baseline: str | None = None
    #: seconds between refreshes; None = every 30 s while a SageMaker job is InProgress
    refresh_s: float | None = None
    #: ``--engine``: ``local`` or ``dask://HOST:PORT`` (None: ``$DASK_SCHEDULER_ADDRESS``,
    #: else local)
    engine: str | None = None

    def with_baseline(self, baseline: str) -> DashboardOptions:
        """The same job compared with another run (the Compare page's own choice)."""
        return replace(self, baseline=baseline)

    def app_args(self) -> list[str]:
        """The server child's app arguments."""
        return [OPTIONS_FLAG, json.dumps(asdict(self), sort_keys=True)]

    @classmethod
    def from_app_args(cls, argv: list[str]) -> DashboardOptions:
        """Read back what :meth:`app_args` wrote; one-line errors for anything else."""
        if len(argv) != 2 or argv[0] != OPTIONS_FLAG:
            raise StepscopeError(
                "no SOURCE given: start it as `stepscope dashboard SOURCE` "
                "(job name, s3:// prefix or folder)"
            )
        try:
            doc: Any = json.loads(argv[1])
        except json.JSONDecodeError as exc:
            raise StepscopeError(f"dashboard options are not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise StepscopeError("dashboard options are not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise StepscopeError(f"unknown dashboard option(s): {', '.join(unknown)}")
        if not isinstance(doc.get("source"), str) or not doc["source"]:
            raise StepscopeError(
                "no SOURCE given: start it as `stepscope dashboard SOURCE` "
                "(job name, s3:// prefix or folder)"
            )
        for name, value in doc.items():
            if name == "refresh_s":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise StepscopeError(
                        f"dashboard option refresh_s: expected seconds, got {value!r}"
                    )
            elif value is not None and not isinstance(value, str):
                raise StepscopeError(f"dashboard option {name}: expected text, got {value!r}")
        if doc.get("refresh_s") is not None:
            doc["refresh_s"] = float(doc["refresh_s"])
        return cls(**doc)

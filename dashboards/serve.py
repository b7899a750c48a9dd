"""Launcher: ``streamlit run dashboards/app.py`` plus a warm-up of the job in the background.

Why not plain ``python -m streamlit run``: Streamlit runs the app script only when a
browser connects, so the first visitor would wait for the imports, the dataset and the
rule evaluation. Here the same process starts loading the job (``data.warm``) while the
server starts, and the first page paints from memory.

Usage: ``python -m dashboards.serve [streamlit run options] -- SOURCE [app options]``.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def _warm(cfg: object) -> None:
    """Load the job, then tell the CLI (``STEPSCOPE_DASHBOARD_READY_FILE``) it is in memory."""
    from dashboards import data

    assert isinstance(cfg, data.AppConfig)
    data.warm(cfg)
    import plotly.graph_objects  # noqa: F401  (the pages' heaviest import, paid before any visitor)

    marker = os.environ.get("STEPSCOPE_DASHBOARD_READY_FILE")
    if marker:
        Path(marker).write_text("loaded\n")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    app_args = args[args.index("--") + 1 :] if "--" in args else []
    warming = False
    if os.environ.get("STEPSCOPE_DASHBOARD_WARM", "1") != "0":
        from analyzer.errors import StepscopeError
        from dashboards import data

        try:
            cfg = data.parse_args(app_args)
        except StepscopeError:
            cfg = None  # the page reports bad arguments itself
        if cfg is not None:
            threading.Thread(target=_warm, args=(cfg,), name="stepscope-warm", daemon=True).start()
            warming = True
    marker = os.environ.get("STEPSCOPE_DASHBOARD_READY_FILE")
    if marker and not warming:  # nothing to wait for: the page loads (or reports) on its own
        Path(marker).write_text("not warmed\n")
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(APP), *args]
    stcli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()

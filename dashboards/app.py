"""Streamlit entry: load the job, render the shared filters, run the chosen page.

Started by ``stepscope dashboard SOURCE`` as ``streamlit run dashboards/app.py -- SOURCE
[--cache DIR] [--rules FILE] [--profile P] [--region R] [--baseline SOURCE]
[--refresh SECONDS] [--engine local|dask://HOST:PORT]``. Bad input (unknown job, no
credentials, empty folder) is shown as one line in the page, never as a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by Streamlit: make the project importable
    _root = str(Path(__file__).resolve().parents[1])
    if _root not in sys.path:
        sys.path.insert(0, _root)

import streamlit as st

from analyzer.errors import StepscopeError
from analyzer.ingest import no_profiler_data
from dashboards import data, filters, ui

HINTS = (
    "SOURCE is a local folder holding profiler output, an `s3://bucket/prefix`, or a SageMaker "
    "training job name. For S3 and job names check your AWS credentials (`--profile`) and "
    "region (`--region`)."
)


def _fail(source: str, message: str) -> None:
    st.title("stepscope dashboard")
    st.error(f"Cannot open {source}: {message}")
    st.info(HINTS)
    st.stop()


def _load(cfg: data.AppConfig) -> data.JobData:
    job = data.loaded(cfg)
    if job is not None:
        return job
    try:
        with st.spinner(f"Loading {cfg.source}: reading the dataset and evaluating the rules…"):
            return data.load_job(cfg)
    except StepscopeError as exc:
        _fail(cfg.source, exc.one_line())
    except Exception as exc:  # a bug still reaches the user as one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        _fail(cfg.source, f"internal error: {type(exc).__name__}: {first}")
    raise AssertionError("unreachable")


def _bump(cfg: data.AppConfig) -> None:
    data.bump_generation(cfg)


def _refresh_controls(job: data.JobData) -> None:
    """Manual refresh always; automatic while the job runs (or with --refresh)."""
    cfg = job.cfg
    interval = cfg.refresh_s if cfg.refresh_s is not None else (30.0 if job.running else 0.0)
    with st.sidebar:
        st.divider()
        st.button(
            "Refresh data",
            key="refresh",
            on_click=_bump,
            args=(cfg,),
            help="Re-read the source; only new or changed files are read.",
        )
        if interval and interval > 0:
            _auto_refresh(job, interval)
        st.caption(
            f"{'report from cache' if job.report_from_cache else 'rules evaluated'} · "
            f"loaded in {job.load_s:.1f} s"
        )


def _auto_refresh(job: data.JobData, interval: float) -> None:
    @st.fragment(run_every=interval)
    def poll() -> None:
        st.caption(f"auto-refresh every {interval:.0f} s · checked {time.strftime('%H:%M:%S')}")
        if data.refresh_due(job.cfg, interval):
            try:
                new = data.load_job(job.cfg)
            except Exception as exc:  # keep showing the last good data
                st.caption(
                    "refresh failed: "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                )
                return
            if new.key != job.key:
                st.rerun(scope="app")

    poll()


def main() -> None:
    st.set_page_config(
        page_title="stepscope dashboard", page_icon=":material/monitoring:", layout="wide"
    )
    try:
        cfg = data.parse_args(sys.argv[1:])
    except StepscopeError as exc:
        _fail("the dashboard", exc.one_line())
        return
    job = _load(cfg)
    pages = ui.make_pages()
    nav = st.navigation(list(pages.values()))
    with st.sidebar:
        st.caption(f"**{job.name}** · {job.report.job.kind}")
    empty = no_profiler_data(job.job.summary)
    if empty is not None:  # no verdict without data: every page says so first
        later = (
            " The job is still running: its data appears as SageMaker uploads it."
            if job.running
            else ""
        )
        st.error(empty + later)
    flt = filters.sidebar(
        ui.natural(job.nodes), sorted(job.ranks), job.span
    )  # algo-2 before algo-10
    _refresh_controls(job)
    ui.set_context(ui.Ctx(job=job, filters=flt, pages=pages))
    nav.run()


main()

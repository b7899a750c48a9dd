"""Dashboard benchmark: ``stepscope dashboard`` on a large job, measured in headless Chromium.

    .venv/bin/python bench/bench_dashboard.py [--nodes 8 --minutes 60 --interval 0.5 \\
        --gpus 8 --cpus 96] [--quick] [--repeat 3] [--cache DIR]

1. Generates SageMaker system metrics (``python -m tests.support.synthetic``)
   under ``.bench/`` -- the same folder ``bench/bench_ingest.py`` writes, reused while the
   parameters are unchanged (``--regen`` forces a rewrite).
2. Warm-up: ``stepscope dashboard SOURCE --cache DIR --port N`` on a fresh cache ingests the
   job and evaluates the rules; it is stopped once ``<cache>/*/dashboard/report-*.json``
   exists (``--cache DIR`` keeps that cache, and a later run with it skips this step).
3. Timed run: the same command again, now reading the cache. Measured: server ready (start
   -> the URL printed on stdout and ``/_stcore/health`` answering); first paint of the
   Overview (``goto`` -> the Findings heading visible); the System page (sidebar click ->
   its last element shown and every chart drawn by Plotly). Each of ``--repeat`` browser
   contexts is a new Streamlit session; the first is the one a user opening the printed URL
   gets.
4. Peak RSS (``VmHWM``) of the server process (``python -m dashboards.serve``), for the
   warm-up and the timed run.

Debian's ``/usr/bin/chromium`` (``STEPSCOPE_CHROMIUM``) is driven by Playwright, never a
downloaded browser. Target: first paint from cache < 3 s. Results go to
``.bench/dashboard.json`` (screenshots ``.bench/dashboard-*.png``) and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / ".bench"
RESULTS = BENCH_DIR / "dashboard.json"
CHROMIUM = os.environ.get("STEPSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TARGET_FIRST_PAINT_S = 3.0
URL_LINE = re.compile(r"^https?://\S+$")


# ----------------------------------------------------------------------------- dataset


def generate(args: argparse.Namespace) -> dict[str, Any]:
    """The job folder bench_ingest.py generates (same name and ``params.json`` stamp)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_ingest

    return bench_ingest.generate(args)


# ----------------------------------------------------------------------------- server


def stepscope_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("stepscope")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stepscope"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Server:
    """``stepscope dashboard SOURCE`` in its own session (so it stops with all it started)."""

    def __init__(self, source: Path, cache: Path, log_dir: Path, name: str) -> None:
        self.port = free_port()
        self.out = log_dir / f"{name}.out"
        self.err = log_dir / f"{name}.err"
        cmd = [*stepscope_cmd(), "dashboard", str(source), "--cache", str(cache),
               "--port", str(self.port)]  # fmt: skip
        self._fo, self._fe = self.out.open("wb"), self.err.open("wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=self._fo, stderr=self._fe, start_new_session=True
        )
        self.url: str | None = None

    def _fail(self, what: str) -> RuntimeError:
        tail = self.err.read_text(errors="replace")[-3000:]
        return RuntimeError(f"{what}\n--- server stderr (tail) ---\n{tail}")

    def wait_url(self, timeout: float) -> float:
        """Seconds from the start until the URL is printed (on its own stdout line: the job
        is loaded) and the server answers its health check."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._fail(f"dashboard exited early ({self.proc.returncode})")
            if self.url is None:
                lines = self.out.read_text(errors="replace").splitlines()
                self.url = next((ln for ln in lines if URL_LINE.match(ln)), None)
            if self.url is not None:
                try:
                    with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5) as r:
                        if r.status == 200:
                            return time.monotonic() - self.t0
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.05)
        raise self._fail(f"no URL after {timeout:.0f} s")

    def peak_rss(self) -> dict[str, Any]:
        """``VmHWM`` of every live process of the session; the server is ``dashboards.serve``."""
        procs = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[3]) != self.proc.pid:  # session id (start_new_session: our pid)
                continue
            pid = int(name)
            procs.append(
                {
                    "pid": pid,
                    "cmd": " ".join(c.decode(errors="replace") for c in cmdline[:4]),
                    "hwm_mb": round(_status_kib(pid, "VmHWM") / 1024, 1),
                    "rss_mb": round(_status_kib(pid, "VmRSS") / 1024, 1),
                }
            )
        server = [p for p in procs if "dashboards.serve" in p["cmd"]]
        return {
            "server_peak_rss_mb": max((p["hwm_mb"] for p in server), default=None),
            "session_peak_rss_sum_mb": round(sum(p["hwm_mb"] for p in procs), 1),
            "processes": procs,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the CLI forwards it to the server
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left behind in its session
        self._fo.close()
        self._fe.close()


def reports(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/dashboard/report-*.json"))


def warm_up(source: Path, cache: Path, log_dir: Path, timeout: float) -> dict[str, Any]:
    """First server run: ingest + rule evaluation into ``cache``; stopped once cached."""
    srv = Server(source, cache, log_dir, "warm-up")
    try:
        url_s = srv.wait_url(timeout)
        deadline = srv.t0 + timeout
        while not reports(cache) and time.monotonic() < deadline:
            if srv.proc.poll() is not None:
                raise srv._fail(f"dashboard exited ({srv.proc.returncode}) before the report")
            time.sleep(0.2)
        done_s = time.monotonic() - srv.t0
        if not reports(cache):
            raise srv._fail(f"the evaluated report was never cached ({timeout:.0f} s)")
        return {"url_s": round(url_s, 3), "report_cached_s": round(done_s, 3), **srv.peak_rss()}
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- browser


def settle(page: Any, timeout_ms: float) -> None:
    """Until Streamlit finished the run (no status widget, no spinner)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') "
        "&& !document.querySelector('[data-testid=\"stSpinner\"]')",
        timeout=timeout_ms,
    )


def exceptions(page: Any) -> list[str]:
    boxes = page.locator('[data-testid="stException"]')
    return [boxes.nth(i).inner_text()[:500] for i in range(boxes.count())]


def session(browser: Any, url: str, timeout_ms: float, shots: str | None) -> dict[str, Any]:
    """One new browser context (= Streamlit session): Overview, then the System page."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    try:
        page = ctx.new_page()
        page.set_default_timeout(timeout_ms)
        t0 = time.monotonic()
        page.goto(url)
        page.get_by_role("heading", name="Findings", exact=False).first.wait_for()
        first_paint = time.monotonic() - t0
        settle(page, timeout_ms)
        errors = exceptions(page)
        if shots:
            page.screenshot(path=str(BENCH_DIR / f"{shots}-overview.png"), full_page=True)

        t1 = time.monotonic()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("System", exact=True).click()
        page.get_by_role("heading", name="System").first.wait_for()
        # the page's last element: every chart before it has been sent (the status widget
        # alone is no proof, it shows up late), then each chart must be drawn by Plotly
        page.get_by_role("heading", name="Per node (whole job)").first.wait_for()
        page.wait_for_function(
            "() => { const c = [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')];"
            " return c.length > 0 && c.every(el => el.querySelector('.main-svg')); }",
            timeout=timeout_ms,
        )
        settle(page, timeout_ms)
        system_s = time.monotonic() - t1
        charts = int(page.locator('[data-testid="stPlotlyChart"]').count())
        errors += exceptions(page)
        if shots:
            page.screenshot(path=str(BENCH_DIR / f"{shots}-system.png"), full_page=True)
        return {
            "first_paint_s": round(first_paint, 3),
            "system_page_s": round(system_s, 3),
            "system_charts": charts,
            "exceptions": errors,
        }
    finally:
        ctx.close()


def timed_run(
    source: Path, cache: Path, log_dir: Path, repeat: int, timeout: float
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            srv = Server(source, cache, log_dir, "timed")
            try:
                out["server_ready_s"] = round(srv.wait_url(min(timeout, 600)), 3)
                out["url"] = srv.url
                assert srv.url is not None
                out["sessions"] = [
                    session(browser, srv.url, 120_000, "dashboard" if i == 0 else None)
                    for i in range(repeat)
                ]
                out.update(srv.peak_rss())
            finally:
                srv.stop()
        finally:
            browser.close()
    return out


# ----------------------------------------------------------------------------- report


def _fmt(v: float | None, spec: str, unit: str) -> str:
    return "-" if v is None else f"{v:{spec}} {unit}"


def build_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    warm, timed = results.get("warm_up") or {}, results.get("timed") or {}
    sessions = timed.get("sessions") or []
    first = sessions[0] if sessions else {}
    later = sessions[1:]
    fp = first.get("first_paint_s")
    rows = [
        (
            "warm-up: ingest + rules, start -> report cached",
            "reused cache" if warm.get("reused") else _fmt(warm.get("report_cached_s"), ".2f", "s"),
            "",
            "",
        ),
        ("warm-up: server peak RSS", _fmt(warm.get("server_peak_rss_mb"), ".0f", "MB"), "", ""),
        (
            "from cache: server ready (start -> URL printed, answering)",
            _fmt(timed.get("server_ready_s"), ".2f", "s"),
            "",
            "",
        ),
        (
            "from cache: first paint Overview (first session)",
            _fmt(fp, ".2f", "s"),
            f"< {TARGET_FIRST_PAINT_S:g} s",
            "n/a" if fp is None else ("PASS" if fp < TARGET_FIRST_PAINT_S else "FAIL"),
        ),
    ]
    if later:
        vals = [s["first_paint_s"] for s in later]
        rows.append(
            (
                f"from cache: first paint Overview (later sessions, median of {len(vals)})",
                f"{median(vals):.2f} s",
                "",
                "",
            )
        )
    rows.append(
        (
            f"System page: {first.get('system_charts', '?')} charts drawn (first session)",
            _fmt(first.get("system_page_s"), ".2f", "s"),
            "",
            "",
        )
    )
    if later:
        vals = [s["system_page_s"] for s in later]
        rows.append(
            (
                f"System page (later sessions, median of {len(vals)})",
                f"{median(vals):.2f} s",
                "",
                "",
            )
        )
    rows.append(
        ("from cache: server peak RSS", _fmt(timed.get("server_peak_rss_mb"), ".0f", "MB"), "", "")
    )
    return rows


def print_table(results: dict[str, Any]) -> None:
    print(f"dashboard on {results['dataset']['label']}"
          f" ({results['dataset'].get('rows', 0):,} system-metric rows)")  # fmt: skip
    head = ("measure", "value", "target", "")
    lines = [head, *build_rows(results)]
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    for n, r in enumerate(lines):
        print(f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2].ljust(widths[2])}  {r[3]}")
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for s in (results.get("timed") or {}).get("sessions") or []:
        if s.get("exceptions"):
            print(f"WARNING: the page showed {len(s['exceptions'])} exception(s): "
                  f"{s['exceptions'][0][:200]}")  # fmt: skip


def _machine() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_ingest

    return {**bench_ingest._machine(), "loadavg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_ingest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_ingest.add_dataset_args(ap)
    ap.add_argument("--repeat", type=int, default=3, help="browser sessions on the timed server")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep the dashboard cache here (reused, warm-up skipped when it holds a report); "
        "default: a fresh folder under .bench/, removed afterwards",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="warm-up limit, seconds")
    ap.add_argument("--table", action="store_true", help=f"only re-print {RESULTS.name}")
    args = ap.parse_args(argv)
    if args.table:
        print_table(json.loads(RESULTS.read_text()))
        return 0
    if args.quick:
        args.nodes, args.minutes = 2, 5
    if not Path(CHROMIUM).exists():
        print(f"chromium not found at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("playwright is not installed (dev extra)", file=sys.stderr)
        return 2

    BENCH_DIR.mkdir(exist_ok=True)
    label = (
        f"{args.nodes}x{args.minutes:g}min@{args.interval:g}s ({args.gpus} GPU, {args.cpus} CPU)"
    )
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "targets": {"first_paint_s": TARGET_FIRST_PAINT_S},
        "dataset": {"label": label},
    }
    print(f"[1/3] dataset {label} ...", file=sys.stderr, flush=True)
    data = generate(args)
    results["dataset"].update(data)
    if "error" in data:
        print(f"  {data['error']}", file=sys.stderr)
        return 1
    print(
        f"  {data.get('rows', 0):,} rows, {data.get('bytes', 0) / 2**20:,.0f} MiB"
        f"{' (reused)' if data.get('reused') else ''}",
        file=sys.stderr,
    )
    source = Path(data["dir"])
    keep = args.cache is not None
    cache = (
        args.cache.resolve()
        if keep
        else Path(tempfile.mkdtemp(prefix="dashboard-cache-", dir=BENCH_DIR))
    )
    cache.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="dashboard-logs-", dir=BENCH_DIR))
    ok = False
    try:
        if reports(cache):
            print(f"[2/3] warm-up skipped: {cache} holds a report", file=sys.stderr, flush=True)
            results["warm_up"] = {"reused": True}
        else:
            print(
                "[2/3] warm-up: ingest + rules into a cold cache ...", file=sys.stderr, flush=True
            )
            results["warm_up"] = warm_up(source, cache, log_dir, args.timeout)
        print(f"[3/3] timed run from cache, {args.repeat} browser session(s) ...",
              file=sys.stderr, flush=True)  # fmt: skip
        results["timed"] = timed_run(source, cache, log_dir, max(1, args.repeat), args.timeout)
        ok = True
    except Exception as e:  # reported with the server's log, never a bare traceback only
        results["error"] = f"{type(e).__name__}: {e}"
        print(f"error: {results['error']}", file=sys.stderr)
    finally:
        if not keep:
            shutil.rmtree(cache, ignore_errors=True)
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"server logs kept in {log_dir}", file=sys.stderr)
    RESULTS.write_text(json.dumps(results, indent=1, default=str))
    print()
    print_table(results)
    print(f"\nresults: {RESULTS.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

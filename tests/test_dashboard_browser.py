"""A real browser against ``stepscope dashboard`` on the bundled sample job.

Debian's ``chromium`` driven by Playwright (never a downloaded browser): the findings are
listed, every page's charts render without a Streamlit exception box, switching rank
changes the view (and the URL), and a finding's "Show chart" button opens its page.
Screenshots go to ``artifacts/screenshots/`` (gitignored). Skipped, with the reason, when
chromium or Playwright is missing. The first paint of a large job is measured by
``bench/bench_dashboard.py``, not here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("STEPSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (dev extra)"
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``stepscope dashboard SOURCE`` as a subprocess (its own process group, so it is
    stopped with everything it started)."""

    def __init__(self, source: Path, cache: Path, log: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [
            sys.executable,
            "-c",
            "from stepscope.cli.dashboard import dashboard_command; dashboard_command()",
            str(source),
            "--port",
            str(self.port),
            "--cache",
            str(cache),
            *extra,
        ]
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_url(self, timeout: float = 120) -> float:
        """Seconds until the command printed its URL on its own line (= server ready)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"dashboard exited early ({self.proc.returncode}):\n{self.log.read_text()}"
                )
            if self.url in self.log.read_text(errors="replace").splitlines():
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5) as r:
                    assert r.status == 200
                return time.monotonic() - t0
            time.sleep(0.1)
        pytest.fail(f"no URL after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the CLI forwards it to the server
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dash")
    srv = Server(SAMPLE, tmp / "cache", tmp / "server.log")
    try:
        srv.wait_url()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def tab(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1500, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)  # a shared 2-core machine: a click can wait for a busy tab
    try:
        yield pg
    finally:
        ctx.close()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def settle(page: Any) -> None:
    """Wait until Streamlit finished the run (no spinner, status widget idle)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') "
        "&& !document.querySelector('[data-testid=\"stSpinner\"]')",
        timeout=60_000,
    )
    page.wait_for_timeout(400)


def no_exception(page: Any) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def plots(page: Any, at_least: int = 1) -> int:
    # plots drawn (each has its main-svg), not counting its two svg layers twice
    page.wait_for_function(
        "n => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".filter(p => p.querySelector('.main-svg'))"
        ".length >= n",
        arg=at_least,
        timeout=60_000,
    )
    return int(page.locator(".js-plotly-plot").count())


def trace_names(page: Any, index: int = 0) -> list[str]:
    return list(
        page.locator(".js-plotly-plot").nth(index).evaluate("el => el.data.map(d => d.name)")
    )


def goto_page(page: Any, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(page)


def test_overview_lists_findings(server: Server, tab: Any) -> None:
    page = tab
    t0 = time.monotonic()
    page.goto(server.url)
    page.get_by_text("DataLoaderStall").first.wait_for()
    first_paint = time.monotonic() - t0
    settle(page)
    for rule in ("DataLoaderStall", "StragglerRank"):
        assert page.get_by_text(rule).count() >= 1, rule
    assert page.get_by_text("Rank 1 holds the others back").count() == 1
    # DataLoaderStall on both ranks is one box (its places folded under it), StragglerRank one
    assert page.locator('[class*="st-key-group-"]').filter(has_text="both ranks").count() == 1
    assert page.get_by_text("Recommendation:").count() == 2
    no_exception(page)
    shot(page, "overview")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "timings.json").write_text(json.dumps({"sample_first_paint_s": round(first_paint, 3)}))
    assert first_paint < 15, first_paint


def test_overview_picture_renders(server: Server, tab: Any) -> None:
    """Item 10: the Overview draws where each rank's step time goes (stacked bars, one per
    rank and part, drawn by plotly in the browser); the Show-chart buttons show their whole
    label (item 11: no "Show chart: Com…")."""
    page = tab
    page.goto(server.url)
    page.get_by_text("Where the time goes").first.wait_for()
    settle(page)
    plots(page, 1)
    chart = page.locator(".js-plotly-plot").first
    names = chart.evaluate("el => el.data.map(d => d.name)")
    assert names == [
        "compute (own work)",
        "communication (incl. waiting)",
        "data loading",
        "idle (no profiled event)",
    ], names
    assert chart.evaluate("el => el.data[0].y") == ["rank 0", "rank 1"]
    bars = chart.locator(".barlayer .point path")
    assert bars.count() == 8, bars.count()  # 2 ranks x 4 parts, each a drawn rectangle
    # the sample's straggler is a sleep no profiled event covers: rank 1's idle part is the larger
    idle = chart.evaluate(
        "el => Array.from(el._fullData[3].x)"
    )  # decoded from plotly's base64 array
    assert idle[1] > 10 * idle[0], idle
    colours = chart.evaluate("el => el.data.map(d => d.marker.color)")
    assert "#d62728" not in colours and "#e45756" not in colours and "#ff2b2b" not in colours, (
        colours
    )
    buttons = page.get_by_role("button").filter(has_text="Show chart")
    assert buttons.count() >= 2
    for i in range(buttons.count()):  # a cut label overflows the element that holds it
        cut = buttons.nth(i).evaluate(
            "el => Array.from(el.querySelectorAll('*'))"
            ".filter(e => e.scrollWidth > e.clientWidth + 1).length"
        )
        assert cut == 0, buttons.nth(i).inner_text()
    no_exception(page)
    shot(page, "overview-picture")


@pytest.mark.parametrize(
    ("title", "name", "min_plots"),
    [
        ("System", "system", 1),
        ("Steps and data loading", "steps", 3),
        ("Communication", "communication", 1),
        ("Kernels", "kernels", 0),
        ("Compare", "compare", 0),
    ],
)
def test_pages_render(server: Server, tab: Any, title: str, name: str, min_plots: int) -> None:
    page = tab
    page.goto(server.url)
    page.get_by_text("DataLoaderStall").first.wait_for()
    goto_page(page, title)
    page.get_by_role("heading", name=title).first.wait_for()
    if min_plots:
        assert plots(page, min_plots) >= min_plots
    no_exception(page)
    shot(page, name)


def test_switching_rank_changes_the_view(server: Server, tab: Any) -> None:
    page = tab
    page.goto(server.url)
    page.get_by_text("DataLoaderStall").first.wait_for()
    goto_page(page, "Steps and data loading")
    plots(page, 3)
    before = trace_names(page)
    assert {"rank 0", "rank 1"} <= set(before), before
    shot(page, "steps-all-ranks")

    ranks = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Ranks")
    ranks.locator("input").click()
    page.get_by_role("option", name="rank 1", exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => { const el = document.querySelector('.js-plotly-plot');"
        " return el && el.data && !el.data.some(d => d.name === 'rank 0'); }",
        timeout=30_000,
    )
    settle(page)
    after = trace_names(page)
    assert "rank 1" in after and "rank 0" not in after, after
    assert "rank=1" in page.url, page.url
    no_exception(page)
    shot(page, "steps-rank-1")

    # the filter carries across pages (and stays in the URL)
    goto_page(page, "Overview")
    assert "rank=1" in page.url, page.url
    assert page.get_by_text("Rank 0 waits for data").count() == 0
    assert page.get_by_text("Rank 1 waits for data").count() == 1


def test_shared_url_restores_filters(server: Server, tab: Any) -> None:
    page = tab
    page.goto(f"{server.url}/steps?rank=0")
    plots(page, 3)
    settle(page)
    names = trace_names(page)
    assert "rank 0" in names and "rank 1" not in names, names
    no_exception(page)


def test_finding_links_to_its_chart(server: Server, tab: Any) -> None:
    page = tab
    page.goto(server.url)
    page.get_by_text("Rank 1 holds the others back").wait_for()
    settle(page)
    card = page.locator('[class*="st-key-finding-"]').filter(
        has_text="Rank 1 holds the others back"
    )
    card.get_by_role("button", name="Show chart: Communication").click()
    page.get_by_role("heading", name="Communication").first.wait_for()
    settle(page)
    assert "/communication" in page.url and "rank=1" in page.url, page.url
    assert plots(page, 1) >= 1
    assert page.get_by_text("straggler").count() >= 1
    no_exception(page)
    shot(page, "communication-straggler")


def test_kernels_page_on_a_real_gpu_trace(
    chromium: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On a real 2-rank NCCL trace (shared fixtures) the Kernels page draws its charts in the
    browser: kernel types, idle time by cause per stream, GPU time per label, top kernels."""
    from tests.support.fixtures import find_fixtures

    root = find_fixtures()
    src = None if root is None else root / "kineto" / "nccl_2rank_rank0"
    if src is None or not src.is_dir():
        pytest.skip("shared fixtures not found (../shared/fixtures or STEPSCOPE_FIXTURES)")
    tmp = tmp_path_factory.mktemp("gpu-dash")
    srv = Server(src, tmp / "cache", tmp / "server.log")
    ctx = chromium.new_context(viewport={"width": 1500, "height": 1100})
    try:
        srv.wait_url()
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{srv.url}/kernels")
        page.get_by_text("Why the GPU idled").first.wait_for()
        settle(page)
        assert plots(page, 4) >= 4
        names = [
            n for i in range(page.locator(".js-plotly-plot").count()) for n in trace_names(page, i)
        ]
        assert any(str(n).startswith("host wait") for n in names), names
        assert "DistributedDataParallel.forward" in names
        assert page.get_by_text("Kernel launches").count() >= 1
        no_exception(page)
        shot(page, "kernels-gpu")
    finally:
        ctx.close()
        srv.stop()

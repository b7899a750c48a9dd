"""``stepscope dashboard SOURCE``: serve the Streamlit dashboard on loopback and print its URL.

The server is a child process (``python -m dashboards.serve``, i.e. ``streamlit run
dashboards/app.py`` plus a warm-up of the job); Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import os
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
from types import FrameType

import click

from analyzer.errors import StepscopeError
from analyzer.sources import JOB_NAME_RE, open_source
from stepscope.cli.common import (
    Command,
    aws_options,
    cache_option,
    engine_option,
    open_engine,
    rules_option,
    user_errors,
)
from stepscope.present.dashboard_options import DashboardOptions

DEFAULT_PORT = 8501
READY_TIMEOUT_S = 90.0


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def check_source(source: str) -> None:
    """Fail now, in one line with exit 2 as ``stepscope ingest`` does, on a local folder that
    is not there (or an argument that is no source at all), rather than start a server that
    says "ready" and shows an error page. S3 prefixes and job names need AWS to check: the
    server's load does that, and says what is wrong in the page."""
    if source.startswith("s3://"):
        return
    local = os.path.exists(source) or source.startswith((".", "/", "~")) or os.sep in source
    if local or not JOB_NAME_RE.match(source):
        open_source(source)  # LocalSource checks the folder; anything else is the one-line error


def server_command(host: str, port: int, app_args: list[str]) -> list[str]:
    """The child's command line (``streamlit run`` options, then the app's own after ``--``)."""
    return [
        sys.executable,
        "-m",
        "dashboards.serve",
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--",
        *app_args,
    ]


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = READY_TIMEOUT_S) -> bool:
    """Poll Streamlit's health endpoint until it answers; False if the server died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return proc.poll() is None


@click.command("dashboard", cls=Command)
@click.argument("source")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback by default: the dashboard has no authentication).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port; a free one is picked when it is busy (0: always pick one).",
)
@cache_option
@rules_option
@click.option(
    "--baseline",
    default=None,
    help="A run to show on the Compare page (folder, s3:// prefix or job name).",
)
@aws_options
@click.option(
    "--refresh",
    "refresh_s",
    type=click.FloatRange(min=0),
    default=None,
    help=(
        "Re-read the source every N seconds "
        "(default: 30 while a SageMaker job is InProgress; 0: never)."
    ),
)
@engine_option
@user_errors
def dashboard_command(
    source: str,
    host: str,
    port: int,
    cache_dir: str | None,
    rules_file: str | None,
    baseline: str | None,
    profile: str | None,
    region: str | None,
    refresh_s: float | None,
    engine: str | None,
) -> None:
    """Open SOURCE in the interactive dashboard (Streamlit) and print its URL.

    SOURCE is a local folder, an s3:// prefix, or a SageMaker training job name. Bad input
    is reported in the page. Stop the server with Ctrl-C.
    """
    from rules.ruleset import load_ruleset

    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise StepscopeError("streamlit is not installed", hint="pip install stepscope") from None
    load_ruleset(rules_file)  # a bad rule file is a usage error: fail here, not in the page
    check_source(source)
    if baseline is not None:
        try:
            check_source(baseline)
        except StepscopeError as exc:
            raise StepscopeError(f"--baseline: {exc.message}", hint=exc.hint) from None
    with open_engine(
        engine
    ):  # a bad --engine or an unreachable scheduler: one line, before the server
        pass
    if port == 0 or not port_is_free(host, port):
        chosen = free_port(host)
        if port:
            click.echo(f"stepscope: port {port} is busy; using {chosen}", err=True)
        port = chosen
    url = f"http://{_url_host(host)}:{port}"
    click.echo(f"stepscope dashboard: {url}  (starting; Ctrl-C to stop)", err=True)
    marker = Path(tempfile.mkdtemp(prefix="stepscope-dash-")) / "loaded"
    env = {**os.environ, "STEPSCOPE_DASHBOARD_READY_FILE": str(marker)}
    args = DashboardOptions(
        source,
        cache_dir=cache_dir,
        rules_file=rules_file,
        profile=profile,
        region=region,
        baseline=baseline,
        refresh_s=refresh_s,
        engine=engine,
    ).app_args()
    proc = subprocess.Popen(server_command(host, port, args), env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        if not wait_ready(proc, f"http://{_url_host(host)}:{port}"):
            code = proc.wait()
            raise StepscopeError(
                f"the dashboard server exited (code {code}) before it was ready; "
                "see its output above"
            )
        click.echo(f"stepscope dashboard: loading {source} (dataset and rules)…", err=True)
        while not marker.exists() and proc.poll() is None:  # first paint then comes from memory
            time.sleep(0.2)
        shutil.rmtree(marker.parent, ignore_errors=True)
        if proc.poll() is not None:
            raise StepscopeError(
                f"the dashboard server exited (code {proc.returncode}); see its output above"
            )
        click.echo(f"stepscope dashboard: ready at {url}", err=True)
        click.echo(url)
        code = proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the child as well; give it time to stop
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            code = proc.wait()
        click.echo("stepscope dashboard: stopped", err=True)
        code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    sys.exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)

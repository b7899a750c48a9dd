"""What every command shares: user-facing errors (bad usage included), logging, progress bars,
the ``--engine`` option."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import click

from analyzer.errors import StepscopeError

if TYPE_CHECKING:
    from rich.console import Console

    from analyzer.engines import DaskEngine

F = TypeVar("F", bound=Callable[..., Any])


@cache
def stderr_console() -> Console:
    """The rich console on stderr, made on first use: a quiet run never imports rich."""
    from rich.console import Console

    return Console(stderr=True)


def usage_line(exc: click.ClickException) -> str:
    """Click's error as the one line every stepscope error is: ``stepscope: error: ...``.

    Why not click's own three lines ("Usage: ... / Try ... / Error: ..."): the CLI promises one
    line per error (a CI log greps for ``stepscope: error:``); the ``--help`` pointer stays,
    at the end of the line.
    """
    text = " ".join(exc.format_message().split())
    text = (text[:1].lower() + text[1:]).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        text += f" (see {ctx.command_path} --help)"
    return f"stepscope: error: {text}"


class OneLineErrors:
    """Mixed into every command class: usage errors (a missing argument, a bad option value)
    are one line on stderr and exit 2, like every other stepscope error.

    ``main`` runs click in non-standalone mode and does what standalone mode would, except
    for the message: the same exit codes, ``--help`` and ``--version`` as usual.
    """

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        run = super().main  # type: ignore[misc]  # a mixin: click.Command is the next class
        if not standalone_mode:
            return run(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = run(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("stepscope: interrupted", err=True)
            sys.exit(130)
        except (
            click.exceptions.NoArgsIsHelpError
        ) as exc:  # bare `stepscope`: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(usage_line(exc), err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int is click's Exit code (--help: 0)


class Command(OneLineErrors, click.Command):
    """The class of every ``stepscope`` command (``@click.command(..., cls=Command)``)."""

    def get_short_help_str(self, limit: int = 45) -> str:
        """The command list of ``stepscope --help`` shows each command's first sentence
        whole (click cuts it at ``limit`` characters, mid-sentence, with "...")."""
        if self.short_help:
            return self.short_help
        text = " ".join((self.help or "").split("\n\n", 1)[0].split())
        first, dot, _ = text.partition(". ")
        return first + "." if dot else text


def user_errors(fn: F) -> F:
    """Turn StepscopeError (and a few OS errors) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StepscopeError as exc:
            click.echo(f"stepscope: error: {exc.one_line()}", err=True)
            sys.exit(exc.exit_code)
        except PermissionError as exc:
            click.echo(f"stepscope: error: permission denied: {exc.filename or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("stepscope: interrupted", err=True)
            sys.exit(130)
        except (
            SystemExit,
            click.exceptions.ClickException,
            click.exceptions.Exit,
            click.exceptions.Abort,
        ):
            raise
        except Exception as exc:  # a bug: still one line for the user, the traceback on request
            if os.environ.get("STEPSCOPE_DEBUG"):
                raise
            logging.getLogger("stepscope").debug("internal error", exc_info=True)
            click.echo(
                f"stepscope: internal error: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''} "
                "(set STEPSCOPE_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    handler: logging.Handler
    if quiet:
        level = logging.ERROR
        handler = logging.StreamHandler(sys.stderr)
    else:
        from rich.logging import RichHandler

        handler = RichHandler(
            console=stderr_console(), show_path=False, show_time=False, markup=False
        )
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar fed by the pipeline's (phase, done, total) callback."""
    if not enabled:
        yield lambda phase, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    labels = {"list": "listing files", "read": "reading + parsing", "merge": "merging tables"}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        yield update


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, in the order given (as they read in --help)."""

    def apply(fn: F) -> F:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


#: ``--cache``: where the parsed tables are kept (every command that reads a source)
cache_option = click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache folder or s3://bucket/prefix (default: $STEPSCOPE_CACHE or ~/.cache/stepscope).",
)
#: ``--rules``: the rule file (the one file report, dashboard, export and attach read)
rules_option = click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Rule file overriding the default thresholds (the file `stepscope attach` reads too).",
)
#: ``--profile`` / ``--region``: how an s3:// prefix or a SageMaker job name is reached
aws_options = _options(
    click.option("--profile", default=None, help="AWS profile for S3 and SageMaker sources."),
    click.option("--region", default=None, help="AWS region for SageMaker job names."),
)
#: ``--progress`` / ``-v`` / ``-q``: what a long command says on stderr
console_options = _options(
    click.option(
        "--progress/--no-progress",
        default=None,
        help="Progress bar on stderr (default: when stderr is a terminal).",
    ),
    click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
)


def engine_option(fn: F) -> F:
    """``--engine local|dask://HOST:PORT`` (default: ``$DASK_SCHEDULER_ADDRESS``, else local)."""
    return click.option(
        "--engine",
        default=None,
        metavar="local|dask://HOST:PORT",
        help=(
            "Where trace files are parsed and ranks analysed: this machine (default) or an "
            "existing Dask cluster's scheduler (default: $DASK_SCHEDULER_ADDRESS when set), "
            "whose workers read the objects themselves. The workers must reach the cache: "
            "--cache s3://bucket/prefix, or a folder on a file system they all mount at the "
            "same path."
        ),
    )(fn)


@contextmanager
def open_engine(spec: str | None) -> Iterator[DaskEngine | None]:
    """The engine a command runs on, connected now (so a missing package or an unreachable
    scheduler is one line before any work) and closed when the command ends; None: local."""
    from analyzer.engines import DaskEngine, parse_engine

    address = parse_engine(spec)
    if address is None:
        yield None
        return
    with DaskEngine(address) as engine:
        yield engine

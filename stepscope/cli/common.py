"""What every command shares: user-facing errors, logging, progress bars."""

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

F = TypeVar("F", bound=Callable[..., Any])


@cache
def stderr_console() -> Console:
    """The rich console on stderr, made on first use: a quiet run never imports rich."""
    from rich.console import Console

    return Console(stderr=True)


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
        except (SystemExit, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: still one line for the user, the traceback on request
            if os.environ.get("STEPSCOPE_DEBUG"):
                raise
            logging.getLogger("stepscope").debug("internal error", exc_info=True)
            click.echo(
                f"stepscope: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
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

        handler = RichHandler(console=stderr_console(), show_path=False, show_time=False, markup=False)
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

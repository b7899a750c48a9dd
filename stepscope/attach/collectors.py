"""Collectors mode: run the job's command under ``stepscope run`` and ship the collector with it.

Why this is the default: SageMaker Debugger (ProfilerConfig, rule containers) is closed to
new customers, while stepscope's own collectors (``stepscope.collectors``: the system
sampler and the per-process trace recorder) need nothing of the account. What a job needs
for them, whichever way it is launched:

* the collector in the container. stepscope is not on PyPI, so attach ships it: a
  collector-only wheel, ``stepscope_collect-<version>-py3-none-any.whl``, holding only
  ``stepscope/__init__.py`` and ``stepscope/collectors/`` (standard library at import) and
  declaring ``psutil`` and ``nvidia-ml-py`` with no version, so pip installs them only where
  they are absent and never up- or downgrades a package a framework container already has;
* the command run as ``python -m stepscope.collectors.launcher --out DIR -- COMMAND``
  (the launcher needs no click), with DIR the TensorBoard output's local path;
* ``TensorBoardOutputConfig``, so SageMaker uploads DIR to S3 while the job runs.

The wheel is written here with ``zipfile`` from the installed ``stepscope.collectors``
files, so attaching needs neither the source tree nor a build tool, and the same code
gives the same bytes.
"""

from __future__ import annotations

import atexit
import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stepscope.collectors
from analyzer import __version__ as _source_version
from rules.ruleset import RuleSet
from stepscope.attach.common import TENSORBOARD_LOCAL_PATH, AttachError

__all__ = [
    "COLLECTOR_DIST",
    "COLLECTOR_REQUIRES",
    "ENTRY_SHIM",
    "LAUNCHER_MODULE",
    "StagedSource",
    "build_collector_wheel",
    "check_single_command",
    "collector_version",
    "collector_wheel_name",
    "image_install_commands",
    "is_launcher_command",
    "launcher_command",
    "out_dir_of",
    "stage_source",
    "tensorboard_fields",
]

#: the collector-only distribution attach ships (never next to the full ``stepscope`` one)
COLLECTOR_DIST = "stepscope-collect"
#: what the collectors import besides the standard library; no versions, so an install into
#: a container that has them changes nothing (see docs/collect.md, "Install")
COLLECTOR_REQUIRES = ("psutil", "nvidia-ml-py")
LAUNCHER_MODULE = "stepscope.collectors.launcher"
#: the generated entry point that runs the user's one under the launcher (SDK v2 and v3)
ENTRY_SHIM = "stepscope_entry.py"
REQUIREMENTS = "requirements.txt"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest time: the same files give the same wheel
_SHELL_OPERATORS = re.compile(r"(&&|\|\||[;|`]|\$\()")


def collector_version() -> str:
    """stepscope's version (the installed distribution's, else the source tree's)."""
    try:
        return importlib.metadata.version("stepscope")
    except importlib.metadata.PackageNotFoundError:
        return _source_version


def collector_wheel_name() -> str:
    return f"{COLLECTOR_DIST.replace('-', '_')}-{collector_version()}-py3-none-any.whl"


def _collector_files() -> list[tuple[str, bytes]]:
    """(path in the wheel, content) of ``stepscope/__init__.py`` and every collector module."""
    package = Path(stepscope.collectors.__file__).resolve().parent
    root = package.parent
    files = [("stepscope/__init__.py", (root / "__init__.py").read_bytes())]
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files.append((path.relative_to(root.parent).as_posix(), path.read_bytes()))
    return files


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_collector_wheel(dest: str | os.PathLike[str]) -> Path:
    """Write the collector-only wheel into ``dest`` (made if missing); returns its path."""
    version = collector_version()
    dist_info = f"{COLLECTOR_DIST.replace('-', '_')}-{version}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {COLLECTOR_DIST}\n",
            f"Version: {version}\n",
            (
                "Summary: stepscope's training-side collectors only "
                "(stepscope run's launcher, system sampler, trace recorder)\n"
            ),
            "License: Apache-2.0\n",
            "Requires-Python: >=3.10\n",
            *(f"Requires-Dist: {name}\n" for name in COLLECTOR_REQUIRES),
        ]
    )
    wheel_meta = (
        "Wheel-Version: 1.0\n"
        "Generator: stepscope attach\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    entries = [
        *_collector_files(),
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", wheel_meta.encode()),
        (f"{dist_info}/top_level.txt", b"stepscope\n"),
    ]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    path = out / collector_wheel_name()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def image_install_commands(wheel: str | None = None) -> list[str]:
    """How an image of one's own gets the collector (Dockerfile lines)."""
    name = wheel or collector_wheel_name()
    return [
        f"COPY {name} /tmp/",
        f"RUN pip install --no-deps /tmp/{name} && pip install {' '.join(COLLECTOR_REQUIRES)}",
    ]


def launcher_command(out_dir: str, interval_ms: int, python: str = "python") -> list[str]:
    """The prefix that runs a command under the collectors (up to and with ``--``)."""
    return [
        python,
        "-m",
        LAUNCHER_MODULE,
        "--out",
        out_dir,
        "--interval-ms",
        str(interval_ms),
        "--",
    ]


def is_launcher_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` already runs under the launcher (attaching twice wraps once)."""
    return LAUNCHER_MODULE in list(argv)[:3]


def out_dir_of(tensorboard: dict[str, Any] | None) -> str:
    """Where the collectors write: the TensorBoard output's local path (SageMaker's default
    when the config has none), so whatever SageMaker uploads is what they wrote."""
    local = (tensorboard or {}).get("LocalPath")
    return str(local) if local else TENSORBOARD_LOCAL_PATH


def tensorboard_fields(ruleset: RuleSet, s3_output_path: str | None) -> dict[str, Any]:
    """TensorBoardOutputConfig for collectors mode: always set (it is how the data reaches S3
    during the job), under the rule file's ``[profiler] s3_output_path`` or the job's path."""
    base = ruleset.profiler.s3_output_path or s3_output_path
    if not base:
        raise AttachError(
            "no S3 output path for the collectors' TensorBoard output",
            hint=(
                "set OutputDataConfig.S3OutputPath (CLI: --s3-output-path) "
                "or s3_output_path under [profiler]"
            ),
        )
    if not re.match(r"^s3://[^/]+(/.*)?$", base):
        raise AttachError(f"s3_output_path must be an s3://bucket/prefix URI, got {base!r}")
    return {"S3OutputPath": base, "LocalPath": TENSORBOARD_LOCAL_PATH}


def check_single_command(command: str, what: str) -> None:
    """The launcher wraps one command; a chain (``a && b``) would wrap only its first part."""
    if _SHELL_OPERATORS.search(command):
        raise AttachError(
            f"{what} chains shell commands ({command!r}); "
            "stepscope runs one command under its collectors",
            hint=(
                "put the commands in a script and run that, "
                "or attach with debugger=True (--debugger)"
            ),
        )


# --------------------------------------------------------------------------- the entry shim

_SHIM = '''\
"""Generated by stepscope attach: runs {entry} under stepscope's collectors (stepscope run).

The training toolkit runs this file as it would have run {entry} (with the same
arguments, under torchrun or mpirun when the job is distributed); it replaces itself with
``python -m stepscope.collectors.launcher ... -- python {entry} ARGS``. Where the collector
is not installed it runs {entry} directly, with one line on stderr.
"""

import importlib.util
import os
import sys

ENTRY = {entry!r}
LAUNCHER = [{launcher}]


def _flags() -> list:
    """``-u`` when this interpreter got it (torchrun passes it), for the processes after it."""
    given = []
    for arg in getattr(sys, "orig_argv", [])[1:]:
        if not arg.startswith("-"):
            break
        given.append(arg)
    return ["-u"] if "-u" in given else []


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    entry = os.path.join(here, ENTRY)
    flags = _flags()
    if ENTRY.endswith(".sh"):
        target = ["/bin/sh", entry, *sys.argv[1:]]
    else:
        target = [sys.executable, *flags, entry, *sys.argv[1:]]
    try:
        found = importlib.util.find_spec("stepscope.collectors.launcher") is not None
    except Exception:
        found = False
    if found:
        try:
            os.execv(sys.executable, [sys.executable, *flags, *LAUNCHER, *target])
        except OSError as exc:
            print(f"stepscope: collectors off (cannot start the launcher: {{exc}}); "
                  f"running {{ENTRY}} without them",
                  file=sys.stderr, flush=True)
    else:
        print("stepscope: collectors off (stepscope.collectors is not installed); "
              f"running {{ENTRY}} without them",
              file=sys.stderr, flush=True)
    os.execv(target[0], target)


if __name__ == "__main__":
    main()
'''


def entry_shim(entry: str, out_dir: str, interval_ms: int) -> str:
    """The source of ``stepscope_entry.py`` for the user's entry point ``entry``."""
    launcher = launcher_command(out_dir, interval_ms)[1:]  # the shim uses its own interpreter
    return _SHIM.format(entry=entry, launcher=", ".join(repr(a) for a in launcher))


@dataclass(frozen=True)
class StagedSource:
    """A copy of the job's source folder with the collector added (the user's is untouched)."""

    source_dir: Path
    entry_point: str  # the shim, relative to source_dir
    requirements: str  # relative to source_dir
    wheel: Path


def _staging_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="stepscope-source-"))
    atexit.register(shutil.rmtree, path, True)  # the SDK has uploaded it by then
    return path


def stage_source(
    source_dir: str | os.PathLike[str] | None,
    entry_point: str | None,
    *,
    out_dir: str,
    interval_ms: int,
    requirements: str = REQUIREMENTS,
    dest: str | os.PathLike[str] | None = None,
) -> StagedSource:
    """Copy ``source_dir`` (or, without one, the entry point file) into a staging folder,
    put the collector wheel there, append it to ``requirements`` (the user's lines kept),
    and, with an entry point, write the shim that runs it under the launcher.

    ``entry_point`` is relative to ``source_dir``, or a file path when there is none.
    """
    staged = Path(dest) if dest is not None else _staging_dir()
    staged.mkdir(parents=True, exist_ok=True)
    entry_rel: str | None = None
    if source_dir is not None:
        src = Path(source_dir)
        if not src.is_dir():
            raise AttachError(
                f"source_dir {str(source_dir)!r} is not a local folder",
                hint="give a local source_dir, or attach with debugger=True (--debugger)",
            )
        shutil.copytree(
            src,
            staged,
            dirs_exist_ok=True,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", ".git"),
        )
        entry_rel = entry_point
    elif entry_point is not None:
        entry_file = Path(entry_point)
        if not entry_file.is_file():
            raise AttachError(f"entry point {entry_point!r} is not a file")
        shutil.copy2(entry_file, staged / entry_file.name)
        entry_rel = entry_file.name
    if entry_rel is not None:
        if not (staged / entry_rel).is_file():
            raise AttachError(f"entry point {entry_rel!r} is not in source_dir {str(source_dir)!r}")
        if Path(entry_rel).name == ENTRY_SHIM:
            raise AttachError(f"the entry point is already stepscope's {ENTRY_SHIM}")
        if (staged / ENTRY_SHIM).exists():
            raise AttachError(
                f"source_dir already has a file named {ENTRY_SHIM}, which stepscope writes",
                hint="rename it",
            )
        (staged / ENTRY_SHIM).write_text(
            entry_shim(entry_rel, out_dir, interval_ms), encoding="utf-8"
        )
    wheel = build_collector_wheel(staged)
    req = staged / requirements
    lines = req.read_text(encoding="utf-8") if req.is_file() else ""
    if lines and not lines.endswith("\n"):
        lines += "\n"
    req.parent.mkdir(parents=True, exist_ok=True)
    # pip reads a local path in a requirements file relative to its working directory, which
    # both SDKs' containers set to the code folder (where the wheel is)
    req.write_text(lines + f"./{wheel.name}\n", encoding="utf-8")
    return StagedSource(
        source_dir=staged,
        entry_point=ENTRY_SHIM if entry_rel is not None else "",
        requirements=requirements,
        wheel=wheel,
    )

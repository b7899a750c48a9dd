"""TensorBoard event files (``events.out.tfevents.*``) → ``training_scalars`` /
``training_tensors``.

What training scripts already write (``torch.utils.tensorboard.SummaryWriter``, Lightning,
Hugging Face's Trainer) and SageMaker uploads with its TensorBoard output config. Read with
the ``tensorboard`` package's own event loader (``RawEventFileLoader`` + its ``Event``
protos), not a protobuf parser of our own.

Tags become rows by a documented layout (docs/training-health.md):

* a scalar ``<role>/<name>/<stat>`` (role one of ``gradients``, ``weights``,
  ``activations`` and their usual spellings; stat ``norm``, ``mean``, ``std``, ``min``,
  ``max``, ``zero_fraction``, ``nan_count``, ``inf_count``) or ``update_ratio/<name>`` is a
  per-tensor statistic: a ``training_tensors`` row per (step, role, name);
* a histogram ``<role>/<name>`` gives that row its min, max, numel, mean, std and norm (from
  the histogram's sum and sum of squares);
* every other scalar (``train/loss``, ``eval/loss``, ``train/learning_rate``...) is a
  ``training_scalars`` row under its own tag.

The run is the event file's folder in the job, and the rows' ``worker`` (each run is judged
on its own); the node is the host in the file name. An activation's module class may
follow its name after a colon (``activations/net.1:ReLU``), as the hooks' ``module`` does.
A truncated last record (a job still writing, a cut upload) keeps every complete record
before it and says how many bytes were dropped.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from typing import Any

from analyzer.ingest.health_hooks import training_file
from analyzer.ingest.keys import TENSORBOARD_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile

_ROLE_PREFIX = {
    "gradients": "gradient",
    "gradient": "gradient",
    "grads": "gradient",
    "grad": "gradient",
    "weights": "weight",
    "weight": "weight",
    "params": "weight",
    "parameters": "weight",
    "activations": "activation",
    "activation": "activation",
    "update_ratio": "update_ratio",
    "update_ratios": "update_ratio",
}
_STATS = ("norm", "mean", "std", "min", "max", "zero_fraction", "nan_count", "inf_count")
_STAT_TAG_RE = re.compile(r"^(?P<prefix>[^/]+)/(?P<name>.+)/(?P<stat>" + "|".join(_STATS) + r")$")
_RECORD_OVERHEAD = 16  # TFRecord framing: u64 length, u32 crc of it, data, u32 crc of data
_HOST_SUFFIX_RE = re.compile(r"\.\d+\.\d+$")  # SummaryWriter appends ".<pid>.<n>"


def host_from_key(key: str) -> str | None:
    m = TENSORBOARD_RE.search(key)
    if not m or not m.group("host"):
        return None
    return _HOST_SUFFIX_RE.sub("", m.group("host")) or None


def run_from_key(key: str) -> str:
    """The TensorBoard run: the event file's folder (``.`` at the job's root)."""
    return key.rsplit("/", 1)[0] if "/" in key else "."


def parse_tensorboard_events(data: bytes, key: str) -> ParsedFile:
    """One event file; a truncated tail is a warning, a file with no event a skip."""
    from tensorboard.compat.proto import event_pb2

    records, consumed = _records(data)
    if not records:
        raise UnreadableFile("no complete TensorBoard event record")
    run = run_from_key(key)
    # the run names the training process (one SummaryWriter each): it is the row's worker
    base: dict[str, Any] = {
        "node": host_from_key(key),
        "rank": None,
        "worker": run,
        "source": "tensorboard",
    }
    scalars: list[dict[str, Any]] = []
    tensors: dict[tuple[int, str, str], dict[str, Any]] = {}
    bad = 0
    for raw in records:
        try:
            event = event_pb2.Event.FromString(raw)
        except Exception:  # a record that frames right but is no Event: counted, not fatal
            bad += 1
            continue
        if not event.HasField("summary"):
            continue
        step = int(event.step)
        wall = int(event.wall_time * 1e9) if event.wall_time else None
        for value in event.summary.value:
            _one_value(value, step, wall, base, run, scalars, tensors)
    warnings = []
    if consumed < len(data):
        warnings.append(
            f"truncated event file: {len(data) - consumed} bytes after the last complete "
            "record skipped"
        )
    if bad:
        warnings.append(f"{bad} undecodable record{'s' if bad != 1 else ''} skipped")
    return training_file(scalars, list(tensors.values()), warnings)


def _records(data: bytes) -> tuple[list[bytes], int]:
    """The serialized events TensorBoard's loader reads from the file, and how many bytes
    they span: the loader stops quietly at a truncated or corrupt record, so the bytes it
    did not consume are what was lost."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    fd, path = tempfile.mkstemp(suffix=".tfevents")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        records = list(RawEventFileLoader(path).Load())
    finally:
        os.unlink(path)
    return records, sum(len(r) + _RECORD_OVERHEAD for r in records)


def _one_value(
    value: Any,
    step: int,
    wall: int | None,
    base: dict[str, Any],
    run: str,
    scalars: list[dict[str, Any]],
    tensors: dict[tuple[int, str, str], dict[str, Any]],
) -> None:
    tag = value.tag
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        number: float | None = float(value.simple_value)
    elif kind == "tensor" and value.metadata.plugin_data.plugin_name in ("scalars", ""):
        number = _scalar_tensor(value.tensor)
    else:
        number = None
    if kind == "histo":
        role, name = _role_and_name(tag)
        if role is not None:
            row = _tensor_row(tensors, step, role, name, wall, base)
            _histogram_stats(value.histo, row)
        return
    if number is None:
        return
    m = _STAT_TAG_RE.match(tag)
    if (
        m
        and m.group("prefix") in _ROLE_PREFIX
        and _ROLE_PREFIX[m.group("prefix")] != "update_ratio"
    ):
        row = _tensor_row(
            tensors, step, _ROLE_PREFIX[m.group("prefix")], m.group("name"), wall, base
        )
        stat = m.group("stat")
        row[stat] = (
            int(number) if stat in ("nan_count", "inf_count") and math.isfinite(number) else number
        )
        return
    prefix, _, rest = tag.partition("/")
    if rest and _ROLE_PREFIX.get(prefix) == "update_ratio":
        _tensor_row(tensors, step, "update_ratio", rest, wall, base)["value"] = number
        return
    scalars.append(
        {**base, "step": step, "tag": tag, "value": number, "wall_time_ns": wall, "run": run}
    )


def _role_and_name(tag: str) -> tuple[str | None, str]:
    prefix, _, rest = tag.partition("/")
    role = _ROLE_PREFIX.get(prefix)
    if role is None or not rest or role == "update_ratio":
        return None, tag
    return role, rest


def _tensor_row(
    tensors: dict[tuple[int, str, str], dict[str, Any]],
    step: int,
    role: str,
    name: str,
    wall: int | None,
    base: dict[str, Any],
) -> dict[str, Any]:
    module = None
    if role == "activation" and ":" in name:
        name, _, module = name.rpartition(":")
    row = tensors.get((step, role, name))
    if row is None:
        row = tensors[(step, role, name)] = {
            **base,
            "step": step,
            "role": role,
            "name": name,
            "module": module,
            "wall_time_ns": wall,
        }
    return row


def _histogram_stats(h: Any, row: dict[str, Any]) -> None:
    """What a histogram proto says exactly: count, min, max, and from the sums the mean,
    standard deviation and L2 norm. A norm given as its own scalar wins (it is exact)."""
    num = float(h.num)
    if num <= 0:
        return
    mean = h.sum / num
    var = max(h.sum_squares / num - mean * mean, 0.0)
    row.setdefault("numel", int(num))
    row.setdefault("min", float(h.min))
    row.setdefault("max", float(h.max))
    row.setdefault("mean", float(mean))
    row.setdefault("std", math.sqrt(var))
    row.setdefault("norm", math.sqrt(max(h.sum_squares, 0.0)))
    if h.min == 0 and h.max == 0:
        row.setdefault("zero_fraction", 1.0)


def _scalar_tensor(tensor: Any) -> float | None:
    from tensorboard.util import tensor_util

    try:
        arr = tensor_util.make_ndarray(tensor)
    except Exception:
        return None
    if arr.size != 1:
        return None
    return float(arr.reshape(-1)[0])

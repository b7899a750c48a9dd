"""SageMaker Debugger tensor output → ``training_scalars`` / ``training_tensors``, without smdebug.

``debug-output/events/<step:012d>/<step:012d>_<worker>.tfevents`` holds one TFRecord-framed
TensorFlow ``Event`` proto per saved tensor, its ``summary.value[0].tensor`` a
``TensorProto``: TensorBoard's protos decode them (``tensorboard.compat.proto``), so the
``smdebug`` package (and its protobuf pin) is not needed. The ``index/`` files only say
where each tensor starts in these files; reading the event files whole makes them redundant.

Why the framing is read here and not by TensorBoard's loader: smdebug writes, by default,
no checksum of the data -- its footer is the masked CRC32C of the constant
``b"0x12345678"`` -- which TensorBoard's reader rejects as corrupt. Both footers are
accepted; anything else ends the file as truncated or damaged, keeping what came before.

Names follow smdebug's conventions: ``gradient/<param>`` → role ``gradient``;
``<module>_output_<i>`` / ``<module>_input_<i>`` → ``activation`` / ``activation_input``
(module = the layer name); a one-element tensor (the loss collection:
``CrossEntropyLoss_output_0``) → a scalar; other tensors → ``weight``. The mode in each
value's metadata (plugin ``mode``: 1 TRAIN, 2 EVAL, 3 PREDICT, 4 GLOBAL) prefixes EVAL and
PREDICT scalars' tags with ``eval/`` and ``predict/``, so train and eval losses are
separate series.
"""

from __future__ import annotations

import re
import struct
from functools import cache
from typing import Any

from analyzer.ingest.health_hooks import array_stats, training_file
from analyzer.ingest.keys import DEBUGGER_EVENTS_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile

#: smdebug's footer when it writes no data checksum (its ``CHECKSUM_MAGIC_BYTES``)
_SMDEBUG_NO_CHECKSUM = b"0x12345678"
_MODE_PREFIX = {"2": "eval/", "3": "predict/"}
_ACTIVATION_RE = re.compile(r"^(?P<module>.+)_(?P<kind>output|input)_\d+$")
_WORKER_RANK_RE = re.compile(r"(?:^|_)(?P<rank>\d+)$")


@cache
def _crc_footers() -> tuple[Any, int]:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c, masked_crc32c(_SMDEBUG_NO_CHECKSUM)


def iter_records(data: bytes) -> tuple[list[bytes], str | None]:
    """The file's complete TFRecord payloads, and why reading stopped early (None: it did not)."""
    masked_crc32c, no_checksum = _crc_footers()
    out: list[bytes] = []
    off = 0
    n = len(data)
    while off < n:
        if n - off < 12:
            return out, f"truncated record header at byte {off}"
        (length,) = struct.unpack_from("<Q", data, off)
        (header_crc,) = struct.unpack_from("<I", data, off + 8)
        if header_crc != masked_crc32c(data[off : off + 8]):
            return out, f"corrupt record header at byte {off}"
        end = off + 12 + length
        if end + 4 > n:
            return out, f"truncated record at byte {off} ({n - off} of {length + 16} bytes)"
        payload = data[off + 12 : end]
        (footer,) = struct.unpack_from("<I", data, end)
        if footer != no_checksum and footer != masked_crc32c(payload):
            return out, f"record at byte {off} fails its checksum"
        out.append(payload)
        off = end + 4
    return out, None


def classify(tensor_name: str, size: int) -> tuple[str, str, str | None]:
    """(kind, name, module): kind ``scalar`` or a tensor role, per smdebug's naming."""
    if tensor_name.startswith("gradient/"):
        return "gradient", tensor_name[len("gradient/") :], None
    m = _ACTIVATION_RE.match(tensor_name)
    if size == 1 and (m is None or "loss" in tensor_name.lower()):
        return "scalar", tensor_name, None
    if m:
        role = "activation" if m.group("kind") == "output" else "activation_input"
        return role, tensor_name, m.group("module")
    if size == 1:
        return "scalar", tensor_name, None
    return "weight", tensor_name, None


def parse_debugger_tensors(data: bytes, key: str) -> ParsedFile:
    """One worker's tensors at one step; damage after the first good record is a warning."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    m = DEBUGGER_EVENTS_RE.search(key)
    worker = m.group("worker") if m else None
    wm = _WORKER_RANK_RE.search(worker or "")
    base: dict[str, Any] = {
        "node": None,
        "rank": int(wm.group("rank")) if wm else None,
        "worker": worker,
        "source": "debugger",
    }
    payloads, stopped = iter_records(data)
    if not payloads:
        raise UnreadableFile(stopped or "no Debugger tensor record")
    scalars: list[dict[str, Any]] = []
    tensors: list[dict[str, Any]] = []
    bad = 0
    for raw in payloads:
        try:
            event = event_pb2.Event.FromString(raw)
            values = list(event.summary.value)
            step = int(event.step)
            wall = int(event.wall_time * 1e9) if event.wall_time else None
            decoded = [
                (v, tensor_util.make_ndarray(v.tensor)) for v in values if v.HasField("tensor")
            ]
        except Exception:  # a framed record that is no tensor event: counted, the rest kept
            bad += 1
            continue
        for v, arr in decoded:
            mode = (
                v.metadata.plugin_data.content.decode(errors="replace")
                if v.metadata.plugin_data.plugin_name == "mode"
                else ""
            )
            kind, name, module = classify(v.tag, int(arr.size))
            if kind == "scalar":
                value = float(arr.reshape(-1)[0]) if arr.size else float("nan")
                scalars.append(
                    {
                        **base,
                        "step": step,
                        "tag": _MODE_PREFIX.get(mode, "") + name,
                        "value": value,
                        "wall_time_ns": wall,
                        "run": None,
                    }
                )
            elif mode in _MODE_PREFIX:
                continue  # tensors saved outside training: not what the training rules judge
            else:
                tensors.append(
                    {
                        **base,
                        "step": step,
                        "name": name,
                        "role": kind,
                        "module": module,
                        "wall_time_ns": wall,
                        **array_stats(arr),
                    }
                )
    warnings = []
    if stopped:
        warnings.append(f"{stopped}: the records after it skipped")
    if bad:
        warnings.append(f"{bad} undecodable record{'s' if bad != 1 else ''} skipped")
    if not scalars and not tensors:
        raise UnreadableFile("no tensor in the Debugger event file")
    return training_file(scalars, tensors, warnings)

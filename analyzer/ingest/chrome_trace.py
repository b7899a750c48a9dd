"""Shared reading of Chrome-trace JSON (the format of every timeline here).

SageMaker writes framework timelines incrementally, one event per line, and a file read
while the job runs (or cut by a crash) lacks its closing ``]``. ``load_events`` reads the
whole document when it is valid and otherwise salvages every complete event line, so a
damaged file loses only its damaged lines.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson

from analyzer.ingest.parsed import UnreadableFile


def maybe_gunzip(data: bytes, key: str) -> bytes:
    """Decompress gzip content (by magic bytes, whatever the name says)."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            # Truncated gzip stream: keep what decompresses.
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = d.decompress(data)
            except zlib.error as exc:
                raise UnreadableFile(f"corrupt gzip stream ({exc})") from None
            if not out:
                raise UnreadableFile("corrupt gzip stream (nothing decompressed)") from None
            return out
    return data


def load_events(data: bytes) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Return (events, top-level object without traceEvents, malformed line count)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        events, bad = _salvage_lines(data)
        if not events:
            raise UnreadableFile("not valid JSON and no complete event line in it") from None
        return events, {}, bad
    if isinstance(doc, list):
        return [e for e in doc if isinstance(e, dict)], {}, 0
    if isinstance(doc, dict):
        listed = doc.get("traceEvents")
        if not isinstance(listed, list):
            raise UnreadableFile("JSON object without a traceEvents list")
        top = {k: v for k, v in doc.items() if k != "traceEvents"}
        return [e for e in listed if isinstance(e, dict)], top, 0
    raise UnreadableFile("JSON document is neither a trace array nor a trace object")


def _salvage_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    events: list[dict[str, Any]] = []
    bad = 0
    for raw in data.splitlines():
        line = raw.strip()
        if line in (b"", b"[", b"]", b"{", b"}"):
            continue
        if line.endswith(b","):
            line = line[:-1]
        if line.startswith(b'"traceEvents"'):
            continue
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(ev, dict):
            events.append(ev)
        else:
            bad += 1
    return events, bad

"""stepscope's zero-code health hooks (``stepscope run --health``) → the training tables.

One JSON object a line, per training process, ``health/<node>_rank<R>.<pid>.health.jsonl``
(the contract in docs/training-health.md): ``kind`` ``scalar`` rows become
``training_scalars``, ``tensor`` rows ``training_tensors``. Non-finite floats arrive as JSON
``null`` and are counted in ``nan_count`` / ``inf_count``; a scalar written as ``null`` is
kept as NaN, since a loss that is no longer a number is exactly what ExplodingTensor looks
for. A line that is not a complete record (a process killed mid-write) is a counted skip.

Also home of the two tables' row builders, which the TensorBoard and Debugger readers share.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import orjson

from analyzer.ingest.keys import HEALTH_HOOKS_RE
from analyzer.ingest.parsed import ParsedFile, UnreadableFile

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SCALAR_COLUMNS = ("node", "rank", "worker", "step", "tag", "value", "wall_time_ns", "source", "run")
TENSOR_COLUMNS = (
    "node",
    "rank",
    "worker",
    "step",
    "name",
    "role",
    "module",
    "norm",
    "mean",
    "std",
    "min",
    "max",
    "zero_fraction",
    "value",
    "nan_count",
    "inf_count",
    "neg_inf_count",
    "numel",
    "source",
    "wall_time_ns",
)
_STAT_FLOATS = ("norm", "mean", "std", "min", "max", "zero_fraction", "value")
_STAT_INTS = ("nan_count", "inf_count", "neg_inf_count", "numel")
#: the tensor roles the hooks write (``activation_input``: an activation module's input,
#: since the same format version 1; Debugger's tensors give it too); a row of another role
#: is kept as it is
ROLES = ("gradient", "weight", "update_ratio", "activation", "activation_input")


def scalar_table(rows: list[dict[str, Any]]) -> pa.Table:
    from analyzer.ingest.schemas import TRAINING_SCALARS

    return _table(rows, SCALAR_COLUMNS, TRAINING_SCALARS)


def tensor_table(rows: list[dict[str, Any]]) -> pa.Table:
    from analyzer.ingest.schemas import TRAINING_TENSORS

    return _table(rows, TENSOR_COLUMNS, TRAINING_TENSORS)


def training_file(
    scalars: list[dict[str, Any]], tensors: list[dict[str, Any]], warnings: list[str]
) -> ParsedFile:
    """What a training-data parser returns: the two tables, each only where it has rows
    (one builder for the hooks', TensorBoard's and Debugger's parsers)."""
    tables: dict[str, pa.Table] = {}
    if scalars:
        tables["training_scalars"] = scalar_table(scalars)
    if tensors:
        tables["training_tensors"] = tensor_table(tensors)
    return ParsedFile(tables=tables, warnings=warnings)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    cols = {c: [r.get(c) for r in rows] for c in columns}
    arrays = []
    for f in schema:
        values = cols[f.name]
        if pa.types.is_dictionary(f.type):
            arrays.append(pa.array(values, pa.string()).dictionary_encode().cast(f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def array_stats(values: np.ndarray) -> dict[str, Any]:
    """The per-tensor statistics of the contract, from a whole tensor (Debugger's output):
    NaN/Inf are counted and the other statistics are over the finite values (the hooks write
    ``null`` for those of a non-finite tensor instead; the rules judge the counts either way)."""
    import numpy as np

    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    nan = int(np.isnan(flat).sum())
    inf = int(np.isinf(flat).sum())
    finite = flat[np.isfinite(flat)] if nan or inf else flat
    neg = int(np.isneginf(flat).sum()) if inf else 0
    out: dict[str, Any] = {
        "numel": int(flat.size),
        "nan_count": nan,
        "inf_count": inf,
        "neg_inf_count": neg,
    }
    if finite.size:
        out.update(
            norm=float(np.sqrt(np.dot(finite, finite))),
            mean=float(finite.mean()),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
            zero_fraction=float((flat == 0).sum() / flat.size),
        )
    return out


def parse_health_hooks(data: bytes, key: str) -> ParsedFile:
    """One process's health file; bad lines are counted, the good ones kept."""
    m = HEALTH_HOOKS_RE.search(key)
    file_node = m.group("node") if m else None
    file_rank = int(m.group("rank")) if m else None
    scalars: list[dict[str, Any]] = []
    tensors: list[dict[str, Any]] = []
    bad = 0
    unknown = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            if not isinstance(rec, dict):
                raise TypeError("not an object")
            kind = rec["kind"]
            step = int(rec["step"])
            t = rec.get("time")
            row: dict[str, Any] = {
                "node": str(rec.get("node", file_node))
                if rec.get("node", file_node) is not None
                else None,
                "rank": int(rec["rank"]) if rec.get("rank") is not None else file_rank,
                "step": step,
                "wall_time_ns": None if t is None else int(float(t) * 1e9),
                "source": "stepscope",
            }
            if kind == "scalar":
                value = rec.get("value")
                row.update(tag=str(rec["tag"]), value=math.nan if value is None else float(value))
                scalars.append(row)
            elif kind == "tensor":
                row.update(name=str(rec["name"]), role=str(rec["role"]), module=rec.get("module"))
                for f in _STAT_FLOATS:
                    v = rec.get(f)
                    row[f] = None if v is None else float(v)
                for f in _STAT_INTS:
                    v = rec.get(f)
                    row[f] = None if v is None else int(v)
                if row["role"] == "update_ratio" and rec.get("value") is None and "value" in rec:
                    row["value"] = math.nan  # the ratio itself was not finite
                tensors.append(row)
            else:
                unknown += 1
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
    if not scalars and not tensors:
        raise UnreadableFile(f"no health record ({bad} malformed lines)")
    warnings = []
    if bad:
        warnings.append(f"{bad} malformed line{'s' if bad != 1 else ''} skipped")
    if unknown:
        warnings.append(f"{unknown} record{'s' if unknown != 1 else ''} of an unknown kind skipped")
    return training_file(scalars, tensors, warnings)

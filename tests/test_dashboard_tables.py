"""The dashboard's one table formatter (``dashboards/tables.py``): headings, units, the
decimal policy, blanks, empty columns, and rank/node order, on the tables the pages show."""

from __future__ import annotations

import pandas as pd

from dashboards import tables


def shown(styler: object) -> pd.DataFrame:
    """What the browser displays: the Styler's formatted cells."""
    import re

    html = styler.to_html()  # type: ignore[attr-defined]
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    head = [
        re.sub(r"<.*?>", "", h).strip()
        for h in re.findall(r"<th[^>]*>(.*?)</th>", rows[0], flags=re.S)
    ][1:]
    body = [
        [re.sub(r"<.*?>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
        for r in rows[1:]
    ]
    return pd.DataFrame(body, columns=head)


def test_gloo_collectives_lose_their_empty_columns_and_get_units() -> None:
    """A gloo trace records no message sizes: the size and bandwidth columns are None in
    every row and are left out; times in ns show as ms with the decimal policy."""
    coll = pd.DataFrame(
        {
            "rank": [1, 0],
            "device": ["cpu", "cpu"],
            "library": ["gloo", "gloo"],
            "collective": ["allreduce"] * 2,
            "calls": [7, 7],
            "total_ns": [21_400_000, 300_512_345],
            "mean_ns": [3_057_142.857, 42_930_335.0],
            "max_ns": [5_600_000, 48_000_000],
            "sized_calls": [0, 0],
            "total_bytes": [None, None],
            "algbw_gbps": [None, None],
            "busbw_gbps": [None, None],
        }
    )
    out = tables.formatted(coll)
    assert list(out.data.columns) == [
        "rank",
        "device",
        "library",
        "collective",
        "calls",
        "total (ms)",
        "mean (ms)",
        "max (ms)",
        "calls with a size",
    ]
    assert out.data["rank"].tolist() == [0, 1]
    cells = shown(out)
    assert cells["total (ms)"].tolist() == ["300.5", "21.4"] and cells["mean (ms)"].tolist() == [
        "42.9",
        "3.1",
    ]
    assert cells["calls"].tolist() == ["7", "7"]


def test_blank_cells_decimals_and_booleans() -> None:
    rows = [
        {
            "rank": 0,
            "steps_per_s": 8.55123,
            "excess_pct": 206.123456,
            "reason": None,
            "regressed": True,
        },
        {
            "rank": 1,
            "steps_per_s": 8.5,
            "excess_pct": None,
            "reason": "too few steps",
            "regressed": False,
        },
    ]
    cells = shown(tables.formatted(rows))
    assert list(cells.columns) == [
        "rank",
        "throughput (steps/s)",
        "excess over the others (%)",
        "reason",
        "regressed",
    ]
    assert cells["throughput (steps/s)"].tolist() == ["8.55", "8.50"]  # all under 10: two digits
    assert cells["excess over the others (%)"].tolist() == ["206.1", tables.BLANK]
    assert cells["reason"].tolist() == [tables.BLANK, "too few steps"]
    assert cells["regressed"].tolist() == ["yes", "no"]
    assert "None" not in cells.to_string() and "nan" not in cells.to_string()


def test_numeric_rank_and_natural_node_order() -> None:
    """Ranks 0, 1, 2, ..., 10 (not "10" after "1"); nodes algo-2 before algo-10."""
    df = pd.DataFrame({"node": ["algo-10", "algo-2", "algo-1", "algo-2"], "rank": [10, 3, 0, 2]})
    assert tables.formatted(df).data["rank"].tolist() == [0, 2, 3, 10]
    text = pd.DataFrame({"rank": ["10", "2", "1"]})
    assert tables.formatted(text).data["rank"].tolist() == ["1", "2", "10"]
    runs = pd.DataFrame(
        {"run": ["this run", "this run", "baseline", "baseline"], "rank": [10, 2, 10, 2]}
    )
    got = tables.formatted(runs, group="run").data
    assert list(zip(got["run"], got["rank"], strict=True)) == [
        ("this run", 2),
        ("this run", 10),
        ("baseline", 2),
        ("baseline", 10),
    ]


def test_every_heading_is_words_not_a_field_name() -> None:
    fields = [
        "step_time_mean_ms",
        "step_time_p95_ms",
        "steps_per_s",
        "dataloader_stall_pct",
        "exposed_comm_pct",
        "busy_ms",
        "others_busy_ms",
        "excess_ms",
        "cpu_util_p95",
        "io_wait_p95",
        "pct_of_gpu",
        "change_pct",
        "launch_delay_max_us",
        "peak_allocated_mib",
        "some_new_total_ns",
    ]
    for name in fields:
        heading = tables.column(name).heading
        assert "_" not in heading, (name, heading)
    assert tables.column("some_new_total_ns").heading == "some new total (ms)"
    assert tables.column("steps_per_s").heading == "throughput (steps/s)"

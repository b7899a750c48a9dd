"""Text in the report files: names as code, escapes only where Markdown would misread, one
verdict wording, one rank palette (issue 14, items 1, 7 and 9)."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from rules.ruleset import CATALOG
from stepscope.render.escape import h_prose, md, md_code, md_prose
from stepscope.render.verdict import Verdict
from stepscope.report.model import Counts
from stepscope.report.palette import RANK_COLORS, rank_color, rank_of_label
from stepscope.report.text import code_segments, with_code_spans

GFM = MarkdownIt("commonmark").enable("table").enable("strikethrough")

#: strings from traces and rules that Markdown would misread if left as they are
TRICKY = [
    "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>",
    "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)",
    "job<b>&x|y",
    "x <b>&amp; y &copy; &#169;",
    "*bold* and _it_ and ~~struck~~ and $5 to $6",
    "[a](b) ![c](d) [^1]",
    "# not a heading",
    "1. not a list",
    "- not a list",
    "> not a quote",
    "back\\slash\\* and `unclosed",
    "move decoding out of __getitem__ (DataLoader.__next__, torch.cuda.memory_summary())",
]


def cell_text(markdown: str) -> str:
    """What a reader sees of ``markdown`` rendered in a GFM table cell (code spans as their
    text)."""
    tokens = GFM.parse(f"| h |\n|---|\n| {markdown} |\n")
    cell = [t for t in tokens if t.type == "inline"][1]
    assert cell.children is not None
    kinds = {c.type for c in cell.children}
    assert kinds <= {"text", "code_inline"}, f"{markdown!r} renders as {kinds}"
    return "".join(c.content for c in cell.children)


@pytest.mark.parametrize("text", TRICKY)
def test_escaped_text_renders_as_written(text: str) -> None:
    """Rendered, the escaped text is exactly the original: no tag, link, emphasis, entity,
    heading or list comes out of a kernel name or a message."""
    assert cell_text(md_prose(text)) == text
    assert cell_text(md(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        (
            "rank 0: 40.6 ms of 74.8 ms per step waiting for the next batch (54.3% > 20.0%) "
            "over 8 steps"
        ),
        "rank 1: 32.1 ms of its own work per step vs 2.1 ms on the other ranks (+1458% > 15.0%)",
        "+1458% against the baseline; e.g. ml.p4d.24xlarge on algo-1 (CPU 0, GPU 1) {x}",
    ],
)
def test_plain_sentences_are_left_alone(text: str) -> None:
    """What the issue found in report.md read as text: ``\\(54.3% &gt; 20.0%\\)``, ``\\+1458%``."""
    assert md_prose(text) == text


def test_names_go_in_code_spans() -> None:
    rec = CATALOG["DataLoaderStall"].recommendation
    out = md_prose(rec, table=False)
    for name in (
        "num_workers",
        "pin_memory=True",
        "persistent_workers=True",
        "prefetch_factor",
        "__getitem__",
    ):
        assert name in rec and f"`{name}`" in out
    assert "\\_" not in out and "\\(" not in out
    assert (
        with_code_spans("call .item()/.detach(); torch.compile")
        == "call `.item()`/`.detach()`; `torch.compile`"
    )
    assert (
        with_code_spans("see `enabled = false` in /opt/ml/output/x_y")
        == "see `enabled = false` in `/opt/ml/output/x_y`"
    )
    # words of a sentence are not code
    assert code_segments("e.g. the GPU on algo-1, p95=2.1% (patience=5)") == [
        ("e.g. the GPU on algo-1, p95=2.1% (patience=5)", False)
    ]
    assert h_prose("out of __getitem__ <now>") == "out of <code>__getitem__</code> &lt;now&gt;"


def test_code_spans_in_and_out_of_tables() -> None:
    """GFM unescapes ``\\|`` inside a code span only in a table cell; elsewhere it would show."""
    assert md_code("a|b") == "`a\\|b`" and md_code("a|b", table=False) == "`a|b`"
    assert md_code("x`y") == "`` x`y ``"
    assert cell_text(md_code("a|b")) == "a|b"


@pytest.mark.parametrize(
    ("counts", "fail_on", "state", "line"),
    [
        (
            (3, 0, 0),
            "never",
            "not-failing",
            "3 findings: 3 errors, 0 warnings, 0 info (not failing: --fail-on never)",
        ),
        (
            (3, 1, 0),
            "error",
            "fail",
            "FAIL: 4 findings: 3 errors, 1 warning, 0 info (--fail-on error)",
        ),
        (
            (0, 2, 1),
            "error",
            "not-failing",
            "3 findings: 0 errors, 2 warnings, 1 info (not failing: --fail-on error)",
        ),
        ((0, 0, 0), "error", "pass", "PASS: no findings"),
        ((0, 0, 0), "never", "pass", "PASS: no findings"),
    ],
)
def test_verdict_says_pass_only_when_clean(
    counts: tuple[int, int, int], fail_on: str, state: str, line: str
) -> None:
    error, warning, info = counts
    failing = {
        "error": error,
        "warning": error + warning,
        "info": error + warning + info,
        "never": 0,
    }[fail_on]
    v = Verdict(fail_on, failing, Counts(error=error, warning=warning, info=info))
    assert (v.state, v.line()) == (state, line)
    # report.json's summary.verdict keeps its meaning: does the run fail?
    assert v.verdict == ("fail" if failing else "pass")


def test_the_verdict_counts_findings_as_listed_and_their_places() -> None:
    """Three places of one error pattern and one warning: two findings as every output lists
    them, four places."""
    v = Verdict("error", 3, Counts(error=3, warning=1, info=0), Counts(error=1, warning=1, info=0))
    assert v.line() == "FAIL: 2 findings (4 places): 1 error, 1 warning, 0 info (--fail-on error)"


def test_one_colour_per_rank() -> None:
    assert rank_color(0) == RANK_COLORS[0] and rank_color(len(RANK_COLORS) + 3) == RANK_COLORS[3]
    assert [
        rank_of_label(x)
        for x in ("rank 3", "rank 12 gpu0", "rank 1 ⚠ straggler", "ranks", "outlier", None)
    ] == [
        3,
        12,
        1,
        None,
        None,
        None,
    ]

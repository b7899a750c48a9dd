"""report.junit.xml: one test case per rule, failed where it fired at or above --fail-on.

A rule's findings come as the report groups them: one line per pattern ("all 64 ranks: ...
worst: rank 0"), then each finding under it, its place said once (never "rank 0: rank 0:").
The suite's properties say where each node's system metrics came from."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from stepscope.render.markdown import source_text
from stepscope.render.verdict import Verdict
from stepscope.report.cost import cost_text
from stepscope.report.cost import headline as cost_headline
from stepscope.report.grouping import groups_of, message_of
from stepscope.report.model import FindingGroup, Report


def render(report: Report, verdict: Verdict) -> str:
    by_rule: dict[str, list[FindingGroup]] = {}
    for g in groups_of(report):
        by_rule.setdefault(g.rule, []).append(g)
    suite = ET.Element(
        "testsuite", name=f"stepscope:{report.job.name}", timestamp=report.generated_at
    )
    props = ET.SubElement(suite, "properties")  # which run this file is
    for name, value in (
        ("source", report.job.source),
        ("stepscope_version", report.stepscope_version),
        ("generated_at", report.generated_at),
    ):
        ET.SubElement(props, "property", name=name, value=value)
    if report.cost is not None and report.cost.findings:
        ET.SubElement(props, "property", name="cost", value=cost_headline(report.cost))
    if report.metrics.nodes:
        for n in report.metrics.nodes:
            ET.SubElement(props, "property", name=f"metrics_source {n.node}", value=source_text(n))
    failures = skipped = errors = 0
    # the rules with findings first, in the report's order (leading rules, then costliest),
    # then the others in the registry's
    first_at: dict[str, int] = {}
    for i, f in enumerate(report.findings):
        first_at.setdefault(f.rule, i)
    ordered = sorted(report.rules, key=lambda r: first_at.get(r.rule, len(report.findings)))
    for r in ordered:
        case = ET.SubElement(suite, "testcase", classname="stepscope.rules", name=r.rule)
        gs = by_rule.get(r.rule, [])
        failing = [g for g in gs if verdict.fails(g.severity)]
        if r.status == "error":
            errors += 1
            ET.SubElement(case, "error", message=r.reason or "rule failed")
        elif failing:
            failures += 1
            first = failing[0]
            more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
            el = ET.SubElement(
                case,
                "failure",
                message=f"{first.where}: {first.message}{more}",
                type=first.severity,
            )
            el.text = _lines(report, gs)
        elif r.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message=r.reason or "not applicable")
        elif gs:
            out = ET.SubElement(case, "system-out")
            out.text = _lines(report, gs)
    files = report.job.skipped_files
    if files:  # the data the verdict could not read: its own case, so a CI view shows it
        case = ET.SubElement(suite, "testcase", classname="stepscope.ingest", name="files not read")
        skipped += 1
        ET.SubElement(
            case, "skipped", message=f"{len(files)} file(s) not read: damaged or unreadable"
        )
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(f"{f.path}: {f.reason}" for f in files)
    suite.set("tests", str(len(report.rules) + (1 if files else 0)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _lines(report: Report, groups: list[FindingGroup]) -> str:
    """Each group once, then (for a group of many) each of its findings, indented."""
    out: list[str] = []

    def costs(indexes: list[int]) -> str:
        text = cost_text(report.cost, indexes)
        return f" [costs {text} over the run]" if text else ""

    for g in groups:
        out.append(f"[{g.severity}] {g.where}: {g.message}{costs(g.findings)}")
        if g.count > 1:
            out += [
                f"  {report.findings[i].where}: {message_of(report.findings[i])}{costs([i])}"
                for i in g.findings
            ]
    return "\n".join(out)

"""report.junit.xml: one test case per rule, failed where it fired at or above --fail-on."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from stepscope.render.verdict import Verdict
from stepscope.report.model import Finding, Report


def render(report: Report, verdict: Verdict) -> str:
    by_rule: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_rule.setdefault(f.rule, []).append(f)
    suite = ET.Element("testsuite", name=f"stepscope:{report.job.name}")
    failures = skipped = errors = 0
    for r in report.rules:
        case = ET.SubElement(suite, "testcase", classname="stepscope.rules", name=r.rule)
        fs = by_rule.get(r.rule, [])
        failing = [f for f in fs if verdict.fails(f.severity)]
        if r.status == "error":
            errors += 1
            ET.SubElement(case, "error", message=r.reason or "rule failed")
        elif failing:
            failures += 1
            el = ET.SubElement(case, "failure", message=failing[0].title, type=failing[0].severity)
            el.text = "\n".join(f"[{f.severity}] {f.where}: {f.message}" for f in fs)
        elif r.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message=r.reason or "not applicable")
        elif fs:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(f"[{f.severity}] {f.where}: {f.message}" for f in fs)
    suite.set("tests", str(len(report.rules)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

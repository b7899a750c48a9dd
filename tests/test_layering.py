"""The pipeline's layering holds: no module imports a higher layer, and outputs stay apart.

sources -> ingest -> analyses -> rules -> report -> outputs. Every import counts, lazy ones
inside functions too (they are how a layer would quietly reach back up). Outputs (the CLI,
the renderers, the dashboard, attach) never import each other, except the CLI, which is the
shell that calls the renderers and attach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "rules", "stepscope", "dashboards")

#: (module prefix, layer), most specific first; the rank orders the pipeline
LAYERS: list[tuple[str, str]] = [
    ("analyzer.errors", "sources"),
    ("analyzer.sources", "sources"),
    ("analyzer.ingest", "ingest"),
    ("analyzer.analyses", "analyses"),
    ("analyzer.job", "analyses"),
    ("analyzer", "sources"),  # the package root: version only
    ("stepscope.attach", "outputs"),
    ("rules.attach", "outputs"),  # the old name of stepscope.attach (aliases)
    ("rules.profiling", "collectors"),
    ("rules", "rules"),
    ("stepscope.report", "report"),
    ("stepscope.present", "presentation"),
    ("stepscope.render", "outputs"),
    ("stepscope.cli", "outputs"),
    ("stepscope.collectors", "collectors"),
    ("stepscope", "outputs"),  # __main__
    ("dashboards", "outputs"),
]
RANK = {
    "sources": 0,
    "ingest": 1,
    "analyses": 2,
    "rules": 3,
    "report": 4,
    "presentation": 5,
    "outputs": 6,
}
#: the output packages, which must not import one another
OUTPUTS = ("stepscope.cli", "stepscope.render", "dashboards", "stepscope.attach", "rules.attach")
#: the one output allowed to import others: the CLI writes reports and runs attach
OUTPUT_IMPORTS_ALLOWED = {
    ("stepscope.cli", "stepscope.render"),
    ("stepscope.cli", "stepscope.attach"),
    ("rules.attach", "stepscope.attach"),
}
#: the training-side collectors run inside the user's job: standard library only (and
#: torch, which the job has), nothing of ours above the error type, nothing heavy
COLLECTOR_MAY_IMPORT = ("analyzer.errors",)
HEAVY = (
    "pandas",
    "pyarrow",
    "numpy",
    "plotly",
    "streamlit",
    "boto3",
    "botocore",
    "pydantic",
    "rich",
    "click",
)


def _layer(module: str) -> str | None:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _output(module: str) -> str | None:
    return next((o for o in OUTPUTS if module == o or module.startswith(o + ".")), None)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from pkg import module` imports pkg.module
            out += [
                (node.lineno, f"{name}.{a.name}")
                for a in node.names
                if _is_module(f"{name}.{a.name}")
            ]
    return out


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules() -> list[tuple[Path, str]]:
    return [(p, _module_name(p)) for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def violations(modules: list[tuple[Path, str]]) -> list[str]:
    found: list[str] = []
    for path, module in modules:
        mine = _layer(module)
        assert mine is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
        for line, name in _imports(path, module):
            theirs = _layer(name)
            rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            where = f"{rel}:{line}: {module} ({mine}) imports {name}"
            if mine == "collectors":
                top = name.split(".")[0]
                ours = (
                    theirs is not None
                    and theirs != "collectors"
                    and not name.startswith(COLLECTOR_MAY_IMPORT)
                )
                if ours or top in HEAVY:
                    found.append(f"{where}: a collector imports only the standard library")
                continue
            if name.split(".")[0] == "plotly" and RANK[mine] < RANK["presentation"]:
                found.append(f"{where}: plotly only in the presentation and the outputs")
            if theirs is None:
                continue
            if theirs == "collectors":
                continue  # anyone may read the collectors' constants (trace names, paths)
            if RANK[theirs] > RANK[mine]:
                found.append(f"{where} ({theirs}): a lower layer imports a higher one")
            a, b = _output(module), _output(name)
            if a and b and a != b and (a, b) not in OUTPUT_IMPORTS_ALLOWED:
                found.append(f"{where}: outputs do not import each other")
            if a == "dashboards" and name.startswith(("rules.builtin", "rules.params")):
                found.append(f"{where}: dashboard pages read the report, not the rules")
    return found


def rule_id_literals(modules: list[tuple[Path, str]], ids: dict[str, str]) -> list[str]:
    """String constants equal to a rule id outside that rule's own module: a page, a
    renderer or a table that names a rule (the rule class says what they need instead)."""
    found = []
    for path, module in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in ids
                and ids[node.value] != module
            ):
                rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                found.append(
                    f"{rel}:{node.lineno}: {module} names rule {node.value!r} (its module: "
                    f"{ids[node.value]})"
                )
    return found


def _rule_ids() -> dict[str, str]:
    from rules.registry import RULES

    return {r.id: r.__module__ for r in RULES}


def test_no_rule_id_is_written_outside_its_rule_module() -> None:
    bad = rule_id_literals(_modules(), _rule_ids())
    assert not bad, "\n".join(bad)


def test_the_rule_id_check_catches_a_page_naming_a_rule(tmp_path: Path) -> None:
    fake = tmp_path / "page.py"
    fake.write_text('verdicts = [f for f in findings if f.rule == "StragglerRank"]\n')
    (bad,) = rule_id_literals([(fake, "dashboards.views.page")], _rule_ids())
    assert "names rule 'StragglerRank'" in bad


def test_no_layer_imports_a_higher_one() -> None:
    bad = violations(_modules())
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer() -> None:
    assert all(_layer(m) for _, m in _modules())


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("analyzer.ingest.x", "from analyzer.job import Job\n", "lower layer imports a higher one"),
        (
            "analyzer.analyses.x",
            "def f():\n    from rules.engine import evaluate\n",
            "lower layer imports a higher one",
        ),
        ("dashboards.x", "from stepscope.cli import main\n", "outputs do not import each other"),
        ("stepscope.cli.x", "import dashboards.data\n", "outputs do not import each other"),
        ("dashboards.views.x", "from rules import params\n", "read the report"),
        ("rules.profiling", "import pandas\n", "standard library"),
        ("stepscope.collectors.x", "from analyzer.ingest import ingest\n", "standard library"),
        (
            "stepscope.report.x",
            "import plotly.graph_objects as go\n",
            "plotly only in the presentation",
        ),
        ("analyzer.analyses.x", "def f():\n    import plotly\n", "plotly only in the presentation"),
    ],
)
def test_the_check_catches_each_kind(
    module: str, source: str, expected: str, tmp_path: Path
) -> None:
    """The checker itself: a planted bad import of each kind is reported."""
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    bad = violations([(fake, module)])
    assert any(expected in b for b in bad), bad

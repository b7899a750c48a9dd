"""The two SageMaker SDK majors in tests: one per environment, both exercised by one suite.

SDK v2 (``sagemaker>=2.257,<3``) and v3 (``sagemaker>=3``) cannot share an environment.
The default environment (``.venv``) has one; the other lives in ``.venv-sdkv2`` or
``.venv-sdkv3`` (``make sdk-env``, requirements in ``envs/``). A test module for one major
runs its tests in-process when this interpreter has that major, and otherwise reruns
itself in the other environment through :func:`run_pytest_in_sdk_env`, which skips with
the command that builds it when it is missing (or fails, with
``STEPSCOPE_REQUIRE_SDK_ENVS=1``, as ``make test`` sets, so CI cannot skip silently).

Also here: what every SDK test needs against the local moto endpoint (no telemetry, no
IAM role simulation, which moto does not implement) and the checks on the captured
CreateTrainingJob request.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_DIRS = {2: ".venv-sdkv2", 3: ".venv-sdkv3"}
PYTHON_OVERRIDE = {2: "STEPSCOPE_SDKV2_PYTHON", 3: "STEPSCOPE_SDKV3_PYTHON"}
REQUIRE_VAR = "STEPSCOPE_REQUIRE_SDK_ENVS"
REQUIREMENTS = {2: "envs/sagemaker-v2.txt", 3: "envs/sagemaker-v3.txt"}


def installed_major() -> int | None:
    """Major version of the SageMaker SDK in this interpreter (None: not installed)."""
    try:
        return int(importlib.metadata.version("sagemaker").split(".", 1)[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def require_major(major: int) -> None:
    """Skip unless this interpreter has SDK ``major`` (the module's wrapper test then runs
    it in the other environment)."""
    have = installed_major()
    if have != major:
        pytest.skip(
            f"needs SageMaker SDK v{major} in this interpreter "
            f"(has {'v' + str(have) if have else 'none'}); "
            f"run in {ENV_DIRS[major]} by test_in_sdk_v{major}_env"
        )


def build_command(major: int) -> str:
    venv = ENV_DIRS[major]
    command = (
        f"uv venv {venv} && uv pip install --python {venv}/bin/python -e '.[dev]' "
        f"-r {REQUIREMENTS[major]}"
    )
    return command + ("  (or: make sdk-env)" if major == 3 else "")


def sdk_python(major: int) -> Path | None:
    """The other environment's interpreter, when it exists and has SDK ``major``."""
    override = os.environ.get(PYTHON_OVERRIDE[major])
    python = Path(override) if override else ROOT / ENV_DIRS[major] / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('sagemaker'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0 or not probe.stdout.strip().startswith(f"{major}."):
        return None
    return python


def _missing(major: int, why: str) -> None:
    message = f"SageMaker SDK v{major} environment {why}; build it with: {build_command(major)}"
    if os.environ.get(REQUIRE_VAR, "").strip() not in ("", "0"):
        pytest.fail(message + f" ({REQUIRE_VAR} is set)", pytrace=False)
    pytest.skip(message)


def run_in_sdk_env(
    major: int, args: list[str], *, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in the SDK ``major`` environment, from the repository root."""
    python = sdk_python(major)
    if python is None:
        _missing(major, f"not found at {ENV_DIRS[major]}/ (or ${PYTHON_OVERRIDE[major]})")
    assert python is not None
    child_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    child_env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the env was built from
    child_env.update(env or {})
    return subprocess.run(
        [str(python), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
    )


def run_pytest_in_sdk_env(major: int, test_file: str | Path) -> None:
    """Run ``test_file`` under pytest in the SDK ``major`` environment; fail on any failure
    and when nothing ran (an env without moto or the SDK would only skip)."""
    if installed_major() == major:
        pytest.skip(f"this interpreter has SDK v{major}: the module's tests ran in-process")
    rel = Path(test_file).resolve().relative_to(ROOT)
    proc = run_in_sdk_env(
        major, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(rel)], timeout=900
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"tests in {ENV_DIRS[major]} failed:\n{tail}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, f"no test ran in {ENV_DIRS[major]}:\n{tail}"


# --- the SDKs against the local endpoint ---------------------------------------------------------
SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def quiet_sdk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """No telemetry calls to the internet, no v2 deprecation banner, no IAM role simulation
    (moto has no SimulatePrincipalPolicy), no user/admin SageMaker config from the machine."""
    config = folder / "sagemaker-config.yaml"
    config.write_text(SDK_CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    if installed_major() == 2:
        # SDK v2 re-validates the (already validated) config with jsonschema on every
        # lookup, ~0.25 s each, ~3 s per fit(); loading it validated it once already.
        import sagemaker.utils

        monkeypatch.setattr(sagemaker.utils, "validate_sagemaker_config", lambda *a, **k: None)


def validate_create_training_job(request: Mapping[str, Any]) -> None:
    """botocore's own client-side validation of a CreateTrainingJob request (raises
    ParamValidationError listing every problem)."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    assert shape is not None
    validate_parameters(dict(request), shape)


def without_false_disable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without ``ProfilerConfig.DisableProfiler: false``: SDK v3 serialises shapes
    without false values, the other paths send it; the service default is false."""
    out = dict(fields)
    config = out.get("ProfilerConfig")
    if isinstance(config, Mapping) and config.get("DisableProfiler") is False:
        out["ProfilerConfig"] = {k: v for k, v in config.items() if k != "DisableProfiler"}
    return out


def profiling_part(request: Mapping[str, Any]) -> dict[str, Any]:
    """The four fields stepscope sets, as present in ``request``; hook collections sorted
    (SDK v2 keeps them in a set, so their order in its requests varies)."""
    names = (
        "ProfilerConfig",
        "ProfilerRuleConfigurations",
        "DebugHookConfig",
        "TensorBoardOutputConfig",
    )
    out = {k: request[k] for k in names if k in request}
    hook = out.get("DebugHookConfig")
    if isinstance(hook, Mapping) and "CollectionConfigurations" in hook:
        collections = sorted(
            hook["CollectionConfigurations"], key=lambda c: c.get("CollectionName", "")
        )
        out["DebugHookConfig"] = {**hook, "CollectionConfigurations": collections}
    return out


def rules_by_name(request: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """RuleConfigurationName -> RuleParameters of a request or DescribeTrainingJob answer."""
    return {
        r["RuleConfigurationName"]: dict(r.get("RuleParameters") or {})
        for r in request.get("ProfilerRuleConfigurations") or []
    }

"""``stepscope attach --print``: what attaching would put on a job, without either SDK:
stepscope's collectors by default, Debugger's fields with ``--debugger``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepscope.attach.boto3_request import create_training_job_fields
from stepscope.attach.collectors import ENTRY_SHIM, collector_wheel_name
from stepscope.cli.attach import (
    PLACEHOLDER_COMMAND,
    PLACEHOLDER_IMAGE,
    PLACEHOLDER_S3,
    attach_command,
)
from tests.support.sdk_env import rules_by_name
from tests.test_attach_common import BUILTIN, CUSTOM, IMAGE, write


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(attach_command, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_without_print_explains_usage() -> None:
    code, out, _ = invoke()
    assert code == 0
    assert (
        "attach_to_estimator" in out and "train_with_profiling" in out and "apply_to_request" in out
    )
    assert "stepscope attach --print" in out and "--debugger" in out and "--wheel DIR" in out


# --- collectors mode (the default) ---------------------------------------------------------------
def test_print_boto3_collectors(tmp_path: Path) -> None:
    code, out, err = invoke(
        "--print",
        "--entrypoint",
        "torchrun --nproc-per-node 8 train.py --lr '0.1 0.2'",
        "--s3-output-path",
        "s3://b/jobs",
    )
    assert code == 0, err
    fields = json.loads(out)
    assert fields == create_training_job_fields(
        None,
        None,
        "s3://b/jobs",
        entrypoint=["torchrun", "--nproc-per-node", "8", "train.py", "--lr", "0.1 0.2"],
    )
    assert fields["AlgorithmSpecification"]["ContainerEntrypoint"][:3] == [
        "python",
        "-m",
        "stepscope.collectors.launcher",
    ]
    assert "ProfilerConfig" not in fields and "ProfilerRuleConfigurations" not in fields
    assert "mode: collectors" in err and "--debugger" in err
    assert "image must contain the collector" in err and "pip install --no-deps" in err
    assert f"--wheel DIR` writes {collector_wheel_name()}" in err
    assert "no --region" not in err and "no --entrypoint" not in err


def test_print_collectors_on_a_laptop(aws_env: Path) -> None:
    """No AWS configuration, no command: placeholders, marked, exit 0; no region is needed."""
    code, out, err = invoke("--print")
    assert code == 0, err
    argv = json.loads(out)["AlgorithmSpecification"]["ContainerEntrypoint"]
    assert argv[-1] == PLACEHOLDER_COMMAND and argv[-2] == "--"
    assert "no --entrypoint" in err and "no --s3-output-path" in err and "no --region" not in err


@pytest.mark.parametrize("sdk", ["v2", "v3"])
def test_print_sdk_collectors(sdk: str, tmp_path: Path) -> None:
    rules = write(tmp_path, "[profiler]\nsystem_monitor_interval_millis = 200\n")
    code, text, err = invoke(
        "--print", "--sdk", sdk, "--entrypoint", "train.py", "--rules", str(rules)
    )
    assert code == 0, err
    compile(text, f"<{sdk}>", "exec")
    assert "collectors mode" in text and "SageMaker Debugger: off" in text
    assert collector_wheel_name() in text and "requirements file" in text
    assert (
        "python -m stepscope.collectors.launcher --out /opt/ml/output/tensorboard "
        "--interval-ms 200 "
        "-- python train.py ARGS"
    ) in text
    assert ENTRY_SHIM in text and "ProfilerRule" not in text and "rule_configs" not in text
    assert str(rules) in text
    assert PLACEHOLDER_S3 in text and "no --s3-output-path" in err
    if sdk == "v2":
        namespace: dict[str, object] = {}
        exec(
            text.replace("from sagemaker.debugger import TensorBoardOutputConfig", ""),
            {"TensorBoardOutputConfig": lambda **kw: kw},
            namespace,
        )
        assert namespace["disable_profiler"] is True and namespace["debugger_hook_config"] is False
        assert namespace["tensorboard_output_config"] == {
            "s3_output_path": PLACEHOLDER_S3,
            "container_local_output_path": "/opt/ml/output/tensorboard",
        }


def test_wheel_option_writes_the_collector_wheel(tmp_path: Path) -> None:
    code, out, err = invoke("--wheel", str(tmp_path / "w"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "w" / collector_wheel_name())
    assert (tmp_path / "w" / collector_wheel_name()).is_file()
    code, out, err = invoke(
        "--wheel", str(tmp_path / "x"), "--print", "--entrypoint", "python t.py"
    )
    assert code == 0 and json.loads(out) and "stepscope: wrote" in err


def test_entrypoint_with_debugger_is_a_usage_error() -> None:
    code, out, err = invoke("--print", "--debugger", "--entrypoint", "python train.py")
    assert (
        code == 2
        and out == ""
        and err.startswith("stepscope: error: --entrypoint")
        and err.count("\n") == 1
    )


def test_print_boto3_json(tmp_path: Path) -> None:
    rules = write(tmp_path, CUSTOM)
    code, out, err = invoke(
        "--print",
        "--debugger",
        "--rules",
        str(rules),
        "--region",
        "us-west-2",
        "--s3-output-path",
        "s3://b/jobs",
    )
    assert code == 0, err
    fields = json.loads(out)
    assert fields == create_training_job_fields(rules, "us-west-2", "s3://b/jobs", debugger=True)
    assert rules_by_name(fields)["LowGPUUtilization"]["threshold_p95"] == "55"
    assert {r["RuleEvaluatorImage"] for r in fields["ProfilerRuleConfigurations"]} == {IMAGE}


def test_print_defaults_use_placeholder_path(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    code, out, err = invoke("--print", "--debugger")
    assert code == 0, err
    fields = json.loads(out)
    assert set(rules_by_name(fields)) == BUILTIN
    assert fields["ProfilerConfig"]["S3OutputPath"] == PLACEHOLDER_S3
    assert (
        "929884845733.dkr.ecr.eu-west-1"
        in fields["ProfilerRuleConfigurations"][0]["RuleEvaluatorImage"]
    )
    assert "no --s3-output-path" in err


def test_threshold_change_shows_in_print(tmp_path: Path) -> None:
    a = json.loads(
        invoke(
            "--print",
            "--debugger",
            "--region",
            "us-west-2",
            "--rules",
            str(write(tmp_path, "[rules.StepOutlier]\nstddev = 3\n", "a.toml")),
        )[1]
    )
    b = json.loads(
        invoke(
            "--print",
            "--debugger",
            "--region",
            "us-west-2",
            "--rules",
            str(write(tmp_path, "[rules.StepOutlier]\nstddev = 5\n", "b.toml")),
        )[1]
    )
    assert rules_by_name(a)["StepOutlier"]["stddev"] == "3"
    assert rules_by_name(b)["StepOutlier"]["stddev"] == "5"


def test_print_debugger_v2_and_v3_python(tmp_path: Path) -> None:
    rules = str(write(tmp_path, CUSTOM))
    code, v2, err = invoke("--print", "--debugger", "--sdk", "v2", "--rules", rules)
    assert code == 0, err
    compile(v2, "<v2>", "exec")
    assert "ProfilerRule.sagemaker(rule_configs.LowGPUUtilization(" in v2
    assert "threshold_p95=55" in v2 and "profiler_rules.Dataloader(" in v2
    assert "CollectionConfig(name='gradients')" in v2
    code, v3, err = invoke(
        "--print", "--debugger", "--sdk", "v3", "--rules", rules, "--region", "us-west-2"
    )
    assert code == 0, err
    compile(v3, "<v3>", "exec")
    assert "shapes.ProfilerRuleConfiguration(" in v3 and IMAGE in v3
    assert "'threshold_p95': '55'" in v3


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (["--region", "us-west-2"], "[rules.GPUUtil]\nwindow = 3\n", "unknown rule 'GPUUtil'"),
        (
            ["--region", "us-west-2"],
            "[rules.Dataloader]\nmin_threshold = 7.5\n",
            "[rules.Dataloader] min_threshold: Input should be a valid integer",
        ),
        (["--region", "mars-1"], "", "no evaluator image in region 'mars-1'"),
        (
            ["--region", "us-west-2", "--s3-output-path", "/local/dir"],
            "",
            "must be an s3://bucket/prefix URI",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], text: str, message: str
) -> None:
    code, out, err = invoke("--print", "--debugger", "--rules", str(write(tmp_path, text)), *args)
    assert code == 2 and out == ""
    assert err.startswith("stepscope: error: ") and message in err and err.count("\n") == 1


def test_missing_rule_file(tmp_path: Path) -> None:
    code, _, err = invoke("--print", "--rules", str(tmp_path / "nope.toml"))
    assert code == 2 and "rule file not found" in err


@pytest.mark.parametrize("sdk", ["boto3", "v3"])
def test_print_without_region_shows_a_placeholder(sdk: str, aws_env: Path) -> None:
    """A preview on a laptop with no AWS configuration (aws_env: no region anywhere): the
    rule image is a marked placeholder, a note says so and how to get the real one, exit 0."""
    code, out, err = invoke("--print", "--debugger", "--sdk", sdk)
    assert code == 0, err
    assert PLACEHOLDER_IMAGE in out and ".dkr.ecr." in PLACEHOLDER_IMAGE
    if sdk == "boto3":
        fields = json.loads(out)
        assert {r["RuleEvaluatorImage"] for r in fields["ProfilerRuleConfigurations"]} == {
            PLACEHOLDER_IMAGE
        }
    else:
        compile(out, "<v3>", "exec")
    assert "stepscope: note: no --region" in err and "give --region" in err
    assert "region=" not in err  # the CLI speaks of its flag, not of the Python argument
    code, out, err = invoke("--print", "--debugger", "--sdk", sdk, "--region", "us-west-2")
    assert code == 0 and IMAGE in out and PLACEHOLDER_IMAGE not in out and "no --region" not in err


def test_v2_print_is_copy_pasteable(tmp_path: Path) -> None:
    """No ``s3_output_path=None`` (the SDK fills it in; printed it reads as sent), no
    ``rules_file='<defaults>'`` (not a file), and the placeholder path marked in place."""
    code, v2, err = invoke("--print", "--debugger", "--sdk", "v2")
    assert code == 0, err
    compile(v2, "<v2>", "exec")
    assert "=None" not in v2 and "<defaults>" not in v2
    assert "attach_to_estimator(estimator)\n" in v2
    line = next(ln for ln in v2.splitlines() if PLACEHOLDER_S3 in ln)
    assert "your estimator's output_path" in line and PLACEHOLDER_S3 in err
    rules = write(tmp_path, "[profiler]\ns3_output_path = 's3://b/p'\ndebugger_hook = true\n")
    code, v2, err = invoke("--print", "--debugger", "--sdk", "v2", "--rules", str(rules))
    assert code == 0, err
    assert f"attach_to_estimator(estimator, rules_file={str(rules)!r})" in v2
    assert (
        "ProfilerConfig(\n    s3_output_path='s3://b/p'," in v2
        and "DebuggerHookConfig(s3_output_path='s3://b/p'," in v2
    )
    assert PLACEHOLDER_S3 not in v2 and err == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--sdk", "v2"],
        ["--rules", "r.toml"],
        ["--region", "us-west-2", "--sdk", "v3"],
        ["--debugger"],
        ["--entrypoint", "python train.py"],
    ],
)
def test_options_without_print_are_a_usage_error(args: list[str]) -> None:
    """``attach --sdk v2`` used to print the usage text as if --sdk meant nothing."""
    code, out, err = invoke(*args)
    assert code == 2 and out == ""
    assert err.startswith("stepscope: error: --") and "add --print" in err and err.count("\n") == 1
    assert all(opt in err for opt in args if opt.startswith("--"))

"""SDK v2: ``attach_to_estimator`` then ``fit()`` against a real HTTP SageMaker endpoint.

Runs in-process where SDK v2 is installed (the default environment) and otherwise reruns
itself in ``.venv-sdkv2`` (see tests/support/sdk_env.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.errors import StepscopeError
from rules.ruleset import load_ruleset
from stepscope.attach.common import AttachError, build_fields
from stepscope.cli.attach import v2_source
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.sdk_env import (
    profiling_part,
    quiet_sdk,
    require_major,
    rules_by_name,
    run_pytest_in_sdk_env,
    validate_create_training_job,
)
from tests.test_attach_common import BUILTIN, CUSTOM, IMAGE, REGION, write

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.3-gpu-py311"


def test_in_sdk_v2_env() -> None:
    """This module's tests, in the SDK v2 environment when this one has another major."""
    run_pytest_in_sdk_env(2, __file__)


@pytest.fixture
def v2(aws_endpoint: AwsEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A sagemaker.Session on the local endpoint, with a bucket and a training script."""
    require_major(2)
    quiet_sdk(monkeypatch, tmp_path)
    import boto3
    import sagemaker

    bucket = aws_endpoint.create_bucket()
    session = sagemaker.Session(
        boto_session=boto3.Session(region_name=REGION), default_bucket=bucket
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('training')\n")
    return {"session": session, "bucket": bucket, "src": str(tmp_path / "src"), "tmp": tmp_path}


def pytorch(v2: Any, **kwargs: Any) -> Any:
    from sagemaker.pytorch import PyTorch

    return PyTorch(
        entry_point="train.py",
        source_dir=v2["src"],
        role=ROLE,
        instance_type="ml.g5.xlarge",
        instance_count=2,
        framework_version="2.3",
        py_version="py311",
        sagemaker_session=v2["session"],
        output_path=f"s3://{v2['bucket']}/out",
        **kwargs,
    )


def launch(
    aws_endpoint: AwsEndpoint, estimator: Any, job_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """fit(wait=False); the request as the server got it, and DescribeTrainingJob."""
    estimator.fit(wait=False, logs=False, job_name=job_name)
    sent = aws_endpoint.training_job_request(job_name)
    validate_create_training_job(sent)
    return sent, aws_endpoint.sagemaker.describe_training_job(TrainingJobName=job_name)


def test_pytorch_fit_request_carries_the_rule_set(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    rules_file = write(v2["tmp"], CUSTOM)
    estimator = attach_to_estimator(pytorch(v2), rules_file=rules_file, debugger=True)
    sent, described = launch(aws_endpoint, estimator, "stepscope-v2-pytorch")

    out = f"s3://{v2['bucket']}/out"
    expected = profiling_part(build_fields(load_ruleset(rules_file), REGION, out))
    assert profiling_part(sent) == expected  # the SDK-neutral builder and the SDK agree exactly
    assert sent["ProfilerConfig"] == {
        "S3OutputPath": out,
        "ProfilingIntervalInMilliseconds": 100,
        "DisableProfiler": False,
    }
    rules = rules_by_name(sent)
    assert set(rules) == BUILTIN - {"IOBottleneck"}
    assert rules["LowGPUUtilization"]["threshold_p95"] == "55"
    assert rules["ProfilerReport"]["CPUBottleneck_threshold"] == "35"
    assert "mode" not in rules["StepOutlier"]  # not sent as "None"
    assert {r["RuleEvaluatorImage"] for r in sent["ProfilerRuleConfigurations"]} == {IMAGE}
    # the hook saves the file's collections and those of Debugger's training rules (sorted here)
    assert profiling_part(sent)["DebugHookConfig"] == {
        "S3OutputPath": out,
        "CollectionConfigurations": [
            {
                "CollectionName": "custom_activations_collection",
                "CollectionParameters": {"include_regex": ".*tanh_input|.*sigmoid_input"},
            },
            {"CollectionName": "gradients"},
            {"CollectionName": "losses"},
            {
                "CollectionName": "relu_input",
                "CollectionParameters": {"include_regex": ".*relu_input"},
            },
            {
                "CollectionName": "relu_output",
                "CollectionParameters": {"include_regex": ".*relu_output"},
            },
            {"CollectionName": "weights"},
        ],
    }
    # Rule.sagemaker(rule_configs.<rule>(), rule_parameters=...) sends what the builder builds
    built = build_fields(load_ruleset(rules_file), REGION, out)["DebugRuleConfigurations"]
    assert sent["DebugRuleConfigurations"] == built
    assert {r["RuleConfigurationName"] for r in built} >= {
        "LossNotDecreasing",
        "Overtraining",
        "PoorWeightInitialization",
    }
    assert {r["RuleEvaluatorImage"] for r in sent["DebugRuleConfigurations"]} == {IMAGE}
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": out,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert profiling_part(described) == expected
    assert described["ProfilingStatus"] == "Enabled"


def test_generic_estimator_defaults_and_no_hook(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from sagemaker.estimator import Estimator

    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = Estimator(
        image_uri=PYTORCH_IMAGE,
        role=ROLE,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        sagemaker_session=v2["session"],  # no output_path: the session's default bucket
    )
    attach_to_estimator(estimator, debugger=True)
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-estimator")
    out = f"s3://{v2['bucket']}/"
    assert profiling_part(sent) == build_fields(load_ruleset(), REGION, out)
    assert (
        "DebugHookConfig" not in sent
    )  # debugger_hook = false, although the SDK adds one by default
    assert set(rules_by_name(sent)) == BUILTIN


def test_huggingface_estimator(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from sagemaker.huggingface import HuggingFace

    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = HuggingFace(
        entry_point="train.py",
        source_dir=v2["src"],
        role=ROLE,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        transformers_version="4.49.0",
        pytorch_version="2.5.1",
        py_version="py311",
        image_uri=PYTORCH_IMAGE,
        sagemaker_session=v2["session"],
        output_path=f"s3://{v2['bucket']}/hf",
    )
    attach_to_estimator(estimator, debugger=True)
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-hf")
    assert set(rules_by_name(sent)) == BUILTIN


def test_threshold_change_reaches_the_request(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    loose = write(v2["tmp"], "[rules.GPUMemoryIncrease]\nincrease = 20\n", "loose.toml")
    strict = write(v2["tmp"], "[rules.GPUMemoryIncrease]\nincrease = 2\n", "strict.toml")
    a, _ = launch(
        aws_endpoint,
        attach_to_estimator(pytorch(v2), rules_file=loose, debugger=True),
        "stepscope-v2-loose",
    )
    b, _ = launch(
        aws_endpoint,
        attach_to_estimator(pytorch(v2), rules_file=strict, debugger=True),
        "stepscope-v2-strict",
    )
    assert rules_by_name(a)["GPUMemoryIncrease"]["increase"] == "20"
    assert rules_by_name(b)["GPUMemoryIncrease"]["increase"] == "2"
    assert rules_by_name(b)["ProfilerReport"]["GPUMemoryIncrease_increase"] == "2"


def test_keeps_debugging_rules_and_user_tensorboard(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from sagemaker.debugger import ProfilerRule, Rule, TensorBoardOutputConfig, rule_configs

    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = pytorch(
        v2,
        rules=[
            Rule.sagemaker(rule_configs.loss_not_decreasing()),
            ProfilerRule.sagemaker(rule_configs.CPUBottleneck(threshold=99)),
        ],
        tensorboard_output_config=TensorBoardOutputConfig(s3_output_path="s3://mine/tb"),
    )
    attach_to_estimator(estimator, debugger=True)
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-keep")
    assert [r["RuleConfigurationName"] for r in sent["DebugRuleConfigurations"]] == [
        "LossNotDecreasing"
    ]
    assert (
        rules_by_name(sent)["CPUBottleneck"]["threshold"] == "50"
    )  # the rule file's, not the old one
    assert sent["TensorBoardOutputConfig"] == {"S3OutputPath": "s3://mine/tb"}


def test_disabled_profiler(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    off = write(v2["tmp"], "[profiler]\ndisable_profiler = true\n", "off.toml")
    sent, described = launch(
        aws_endpoint,
        attach_to_estimator(pytorch(v2), rules_file=off, debugger=True),
        "stepscope-v2-off",
    )
    assert sent["ProfilerConfig"] == {"DisableProfiler": True}
    assert "ProfilerRuleConfigurations" not in sent
    assert described["ProfilingStatus"] == "Disabled"


def test_printed_v2_code_is_what_attach_sets(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    """`stepscope attach --print --sdk v2` is runnable and equivalent to attach_to_estimator."""
    from stepscope.attach.sdk_v2 import attach_to_estimator

    rules_file = write(v2["tmp"], CUSTOM)
    namespace: dict[str, Any] = {}
    exec(v2_source(load_ruleset(rules_file), f"s3://{v2['bucket']}/out"), namespace)
    printed = pytorch(
        v2,
        rules=namespace["rules"],
        profiler_config=namespace["profiler_config"],
        debugger_hook_config=namespace["debugger_hook_config"],
        tensorboard_output_config=namespace["tensorboard_output_config"],
        disable_profiler=namespace["disable_profiler"],
    )
    a, _ = launch(aws_endpoint, printed, "stepscope-v2-printed")
    b, _ = launch(
        aws_endpoint,
        attach_to_estimator(pytorch(v2), rules_file=rules_file, debugger=True),
        "stepscope-v2-attached",
    )
    ra, rb = rules_by_name(a), rules_by_name(b)
    diff = [
        (n, k, ra[n].get(k), rb[n].get(k))
        for n in ra
        for k in ra[n].keys() | rb[n].keys()
        if ra[n].get(k) != rb[n].get(k)
    ]
    assert diff == []
    assert profiling_part(a) == profiling_part(b)


# --- bad input ---------------------------------------------------------------------------------
def test_bad_rule_file_fails_before_fit(v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = pytorch(v2)
    bad = write(v2["tmp"], "[rules.StepOutlier]\nstddev = 2.5\n", "bad.toml")
    with pytest.raises(StepscopeError) as info:  # RuleFileError
        attach_to_estimator(estimator, rules_file=bad, debugger=True)
    assert "[rules.StepOutlier] stddev: Input should be a valid integer" in info.value.one_line()
    assert estimator.rules is None  # nothing half-attached


def test_v3_call_on_v2_estimator_names_the_fix(v2: Any) -> None:
    from stepscope.attach.sdk_v3 import train_with_profiling

    with pytest.raises(AttachError) as info:
        train_with_profiling(pytorch(v2))
    line = info.value.one_line()
    assert "takes a SageMaker SDK v3 ModelTrainer, got a v2 estimator" in line
    assert "attach_to_estimator(estimator)" in line


def test_not_an_estimator(v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    with pytest.raises(AttachError, match=r"takes a sagemaker.estimator.Estimator"):
        attach_to_estimator({"TrainingJobName": "x"})


def test_trainium_needs_profiler_off(v2: Any) -> None:
    from sagemaker.pytorch import PyTorch

    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = PyTorch(
        entry_point="train.py",
        source_dir=v2["src"],
        role=ROLE,
        instance_type="ml.trn1.2xlarge",
        instance_count=1,
        image_uri=PYTORCH_IMAGE,
        sagemaker_session=v2["session"],
    )
    with pytest.raises(AttachError, match=r"not supported on ml.trn1.2xlarge"):
        attach_to_estimator(estimator, debugger=True)
    attach_to_estimator(
        estimator,
        rules_file=write(v2["tmp"], "[profiler]\ndisable_profiler = true\n", "off.toml"),
        debugger=True,
    )
    assert estimator.disable_profiler is True


# --- collectors mode (the default) ---------------------------------------------------------------
def uploaded_code(aws_endpoint: AwsEndpoint, sent: dict[str, Any]) -> dict[str, bytes]:
    """The files of the sourcedir.tar.gz the job's sagemaker_submit_directory names."""
    import io
    import tarfile

    uri = json.loads(sent["HyperParameters"]["sagemaker_submit_directory"])
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws_endpoint.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {
            m.name.removeprefix("./"): tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()
        }  # type: ignore[union-attr]


def test_collectors_by_default(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    """The job runs the shim (which runs train.py under the launcher), ships the wheel and
    installs it from requirements.txt, uploads TensorBoard output; no Debugger."""
    from stepscope.attach.collectors import ENTRY_SHIM, collector_wheel_name

    src = Path(v2["src"])
    (src / "requirements.txt").write_text("einops==0.8.0")  # the user's line, no newline at the end
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    estimator = pytorch(v2, hyperparameters={"epochs": 2})
    from stepscope.attach.sdk_v2 import attach_to_estimator

    attach_to_estimator(estimator)
    sent, described = launch(aws_endpoint, estimator, "stepscope-v2-collectors")
    assert {
        p.name: p.read_bytes() for p in src.iterdir()
    } == before  # the user's folder is as it was

    out = f"s3://{v2['bucket']}/out"
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": out,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert sent["ProfilerConfig"] == {"DisableProfiler": True}
    assert "ProfilerRuleConfigurations" not in sent and "DebugHookConfig" not in sent
    assert described["ProfilingStatus"] == "Disabled"
    hp = sent["HyperParameters"]
    assert hp["sagemaker_program"] == f'"{ENTRY_SHIM}"' and hp["epochs"] == "2"

    files = uploaded_code(aws_endpoint, sent)
    wheel = collector_wheel_name()
    assert set(files) == {"train.py", "requirements.txt", ENTRY_SHIM, wheel}
    assert files["requirements.txt"].decode() == f"einops==0.8.0\n./{wheel}\n"
    shim = files[ENTRY_SHIM].decode()
    assert "ENTRY = 'train.py'" in shim
    assert (
        "'stepscope.collectors.launcher', '--out', '/opt/ml/output/tensorboard', "
        "'--interval-ms', '500', '--'" in shim
    )
    compile(shim, ENTRY_SHIM, "exec")


def test_collectors_entry_point_without_source_dir(
    aws_endpoint: AwsEndpoint, v2: Any, tmp_path: Path
) -> None:
    from sagemaker.pytorch import PyTorch

    from stepscope.attach.collectors import ENTRY_SHIM, collector_wheel_name
    from stepscope.attach.sdk_v2 import attach_to_estimator

    (tmp_path / "solo").mkdir()
    script = tmp_path / "solo" / "solo.py"
    script.write_text("print('solo')\n")
    estimator = PyTorch(
        entry_point=str(script),
        role=ROLE,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        framework_version="2.3",
        py_version="py311",
        sagemaker_session=v2["session"],
        output_path=f"s3://{v2['bucket']}/solo",
    )
    attach_to_estimator(estimator)
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-solo")
    files = uploaded_code(aws_endpoint, sent)
    assert set(files) == {"solo.py", "requirements.txt", ENTRY_SHIM, collector_wheel_name()}
    assert "ENTRY = 'solo.py'" in files[ENTRY_SHIM].decode()
    assert [p.name for p in script.parent.iterdir()] == ["solo.py"]


def test_collectors_for_an_image_of_ones_own(aws_endpoint: AwsEndpoint, v2: Any) -> None:
    """No entry point: the container_entry_point (or command=) runs under the launcher; without
    either, the command is unknown: one line naming the fix."""
    from sagemaker.estimator import Estimator

    from stepscope.attach.sdk_v2 import attach_to_estimator

    def generic(**kwargs: Any) -> Any:
        return Estimator(
            image_uri=PYTORCH_IMAGE,
            role=ROLE,
            instance_type="ml.g5.xlarge",
            instance_count=1,
            sagemaker_session=v2["session"],
            output_path=f"s3://{v2['bucket']}/own",
            **kwargs,
        )

    with pytest.raises(AttachError) as info:
        attach_to_estimator(generic())
    line = info.value.one_line()
    assert (
        "no entry_point and no container_entry_point" in line
        and "command=" in line
        and "debugger=True" in line
    )

    estimator = attach_to_estimator(generic(), command=["python", "/workspace/train.py"])
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-own")
    assert sent["AlgorithmSpecification"]["ContainerEntrypoint"] == [
        "python",
        "-m",
        "stepscope.collectors.launcher",
        "--out",
        "/opt/ml/output/tensorboard",
        "--interval-ms",
        "500",
        "--",
        "python",
        "/workspace/train.py",
    ]
    assert sent["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"

    mine = attach_to_estimator(generic(container_entry_point=["bash", "run.sh"]))
    assert mine.container_entry_point[-3:] == ["--", "bash", "run.sh"]
    assert (
        attach_to_estimator(mine).container_entry_point == mine.container_entry_point
    )  # wrapped once


def test_collectors_keep_the_users_tensorboard_and_drop_profiler_rules(
    aws_endpoint: AwsEndpoint, v2: Any
) -> None:
    from sagemaker.debugger import ProfilerRule, Rule, TensorBoardOutputConfig, rule_configs

    from stepscope.attach.collectors import ENTRY_SHIM
    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = pytorch(
        v2,
        rules=[
            Rule.sagemaker(rule_configs.loss_not_decreasing()),
            ProfilerRule.sagemaker(rule_configs.CPUBottleneck(threshold=99)),
        ],
        tensorboard_output_config=TensorBoardOutputConfig(
            s3_output_path="s3://mine/tb", container_local_output_path="/opt/ml/output/mine"
        ),
    )
    attach_to_estimator(estimator)
    sent, _ = launch(aws_endpoint, estimator, "stepscope-v2-collectors-keep")
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": "s3://mine/tb",
        "LocalPath": "/opt/ml/output/mine",
    }
    assert [r["RuleConfigurationName"] for r in sent["DebugRuleConfigurations"]] == [
        "LossNotDecreasing"
    ]
    assert "ProfilerRuleConfigurations" not in sent
    assert (
        "'--out', '/opt/ml/output/mine'" in uploaded_code(aws_endpoint, sent)[ENTRY_SHIM].decode()
    )


def test_collectors_refuse_code_they_cannot_stage(v2: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    estimator = pytorch(v2)
    estimator.source_dir = "s3://bucket/code/sourcedir.tar.gz"
    with pytest.raises(AttachError) as info:
        attach_to_estimator(estimator)
    assert (
        "is not a local folder" in info.value.one_line()
        and "debugger=True" in info.value.one_line()
    )

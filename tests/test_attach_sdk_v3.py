"""SDK v3: ``train_with_profiling(model_trainer)`` against a real HTTP SageMaker endpoint.

Runs in-process where SDK v3 is installed and otherwise reruns itself in ``.venv-sdkv3``
(see tests/support/sdk_env.py); in the default environment (SDK v2) that is the normal case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.errors import StepscopeError
from rules.ruleset import load_ruleset
from stepscope.attach.common import AttachError, build_fields
from stepscope.cli.attach import v3_source
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.sdk_env import (
    profiling_part,
    quiet_sdk,
    require_major,
    rules_by_name,
    run_pytest_in_sdk_env,
    validate_create_training_job,
    without_false_disable,
)
from tests.test_attach_common import (
    BUILTIN,
    CUSTOM,
    HOOK_WITH_TRAINING_RULES,
    IMAGE,
    REGION,
    TRAINING_ATTACHED,
    write,
)

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.3-gpu-py311"


def test_in_sdk_v3_env() -> None:
    """This module's tests, in the SDK v3 environment when this one has another major."""
    run_pytest_in_sdk_env(3, __file__)


@pytest.fixture
def v3(aws_endpoint: AwsEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A v3 Session on the local endpoint, with a bucket and a training script."""
    require_major(3)
    quiet_sdk(monkeypatch, tmp_path)
    import boto3
    from sagemaker.core.utils.utils import SageMakerClient
    from sagemaker.train import Session

    SageMakerClient.reset()  # clients are cached per session; each test has a new endpoint env
    bucket = aws_endpoint.create_bucket()
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=bucket)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('training')\n")
    return {"session": session, "bucket": bucket, "src": str(tmp_path / "src"), "tmp": tmp_path}


def trainer(v3: Any, instance_type: str = "ml.g5.xlarge", **kwargs: Any) -> Any:
    from sagemaker.core.training.configs import Compute, OutputDataConfig, SourceCode
    from sagemaker.train import ModelTrainer

    return ModelTrainer(
        training_image=PYTORCH_IMAGE,
        role=ROLE,
        compute=Compute(instance_type=instance_type, instance_count=2),
        source_code=SourceCode(source_dir=v3["src"], entry_script="train.py"),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{v3['bucket']}/out"),
        sagemaker_session=v3["session"],
        base_job_name="stepscope-v3",
        **kwargs,
    )


def launch(
    aws_endpoint: AwsEndpoint, model_trainer: Any, **kwargs: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    from stepscope.attach.sdk_v3 import train_with_profiling

    job = train_with_profiling(model_trainer, wait=False, logs=False, **kwargs)
    sent = aws_endpoint.training_job_request(job.training_job_name)
    validate_create_training_job(sent)
    described = aws_endpoint.sagemaker.describe_training_job(TrainingJobName=job.training_job_name)
    return job, sent, described


def test_model_trainer_job_carries_the_rule_set(aws_endpoint: AwsEndpoint, v3: Any) -> None:
    rules_file = write(v3["tmp"], CUSTOM)
    job, sent, described = launch(aws_endpoint, trainer(v3), rules_file=rules_file, debugger=True)

    out = f"s3://{v3['bucket']}/out"
    expected = without_false_disable(
        profiling_part(build_fields(load_ruleset(rules_file), REGION, out))
    )
    assert without_false_disable(profiling_part(sent)) == expected
    assert sent["ProfilerConfig"] == {"S3OutputPath": out, "ProfilingIntervalInMilliseconds": 100}
    rules = rules_by_name(sent)
    assert set(rules) == BUILTIN - {"IOBottleneck"}
    assert rules["LowGPUUtilization"]["threshold_p95"] == "55"
    assert rules["LoadBalancing"]["threshold"] == "0.25"
    assert {r["RuleEvaluatorImage"] for r in sent["ProfilerRuleConfigurations"]} == {IMAGE}
    assert sent["DebugHookConfig"]["CollectionConfigurations"] == HOOK_WITH_TRAINING_RULES
    # Debugger's training rules: the builder's DebugRuleConfigurations, through core shapes
    assert (
        sent["DebugRuleConfigurations"]
        == build_fields(load_ruleset(rules_file), REGION, out)["DebugRuleConfigurations"]
    )
    assert {
        r["RuleConfigurationName"] for r in sent["DebugRuleConfigurations"]
    } == TRAINING_ATTACHED
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": out,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    # what ModelTrainer itself puts on the job is still there
    assert sent["AlgorithmSpecification"]["TrainingImage"] == PYTORCH_IMAGE
    assert {c["ChannelName"] for c in sent["InputDataConfig"]} >= {"code", "sm_drivers"}
    assert sent["ResourceConfig"]["InstanceCount"] == 2

    assert without_false_disable(profiling_part(described)) == expected
    assert described["ProfilingStatus"] == "Enabled"
    # the returned resource sees them too (TrainingJob.create describes the job)
    assert job.profiler_config.profiling_interval_in_milliseconds == 100
    assert {r.rule_configuration_name for r in job.profiler_rule_configurations} == set(rules)


def test_threshold_change_reaches_the_request(aws_endpoint: AwsEndpoint, v3: Any) -> None:
    loose = write(v3["tmp"], "[rules.BatchSize]\ngpu_threshold_p95 = 90\n", "loose.toml")
    strict = write(v3["tmp"], "[rules.BatchSize]\ngpu_threshold_p95 = 40\n", "strict.toml")
    _, a, _ = launch(aws_endpoint, trainer(v3), rules_file=loose, debugger=True)
    _, b, _ = launch(aws_endpoint, trainer(v3), rules_file=strict, debugger=True)
    assert rules_by_name(a)["BatchSize"]["gpu_threshold_p95"] == "90"
    assert rules_by_name(b)["BatchSize"]["gpu_threshold_p95"] == "40"
    assert rules_by_name(b)["ProfilerReport"]["BatchSize_gpu_threshold_p95"] == "40"


def test_default_rule_set_and_user_tensorboard(aws_endpoint: AwsEndpoint, v3: Any) -> None:
    from sagemaker.core.training.configs import TensorBoardOutputConfig

    model_trainer = trainer(v3).with_tensorboard_output_config(
        TensorBoardOutputConfig(s3_output_path="s3://mine/tb")
    )
    _, sent, _ = launch(aws_endpoint, model_trainer, debugger=True)
    assert set(rules_by_name(sent)) == BUILTIN
    assert "DebugHookConfig" not in sent
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": "s3://mine/tb",
        "LocalPath": "/opt/ml/output/tensorboard",
    }


def test_printed_v3_code_builds_the_same_shapes(v3: Any) -> None:
    """`stepscope attach --print --sdk v3` is runnable and gives the arguments stepscope passes."""
    from stepscope.attach.sdk_v3 import _shapes

    fields = build_fields(load_ruleset(write(v3["tmp"], CUSTOM)), REGION, "s3://b/out")
    namespace: dict[str, Any] = {}
    exec(v3_source(fields), namespace)
    for name, value in _shapes(fields).items():
        assert namespace[name] == value, name


# --- bad input ---------------------------------------------------------------------------------
def test_v2_call_on_model_trainer_names_the_fix(v3: Any) -> None:
    from stepscope.attach.sdk_v2 import attach_to_estimator

    with pytest.raises(AttachError) as info:
        attach_to_estimator(trainer(v3))
    line = info.value.one_line()
    assert "takes a SageMaker SDK v2 estimator, got a ModelTrainer" in line
    assert "train_with_profiling(model_trainer)" in line


def test_bad_rule_file_fails_before_anything_is_uploaded(
    aws_endpoint: AwsEndpoint, v3: Any
) -> None:
    from stepscope.attach.sdk_v3 import train_with_profiling

    bad = write(v3["tmp"], "[rules.LowGPUUtilization]\nthreshold_p95 = 170\n", "bad.toml")
    jobs_before = len(aws_endpoint.sagemaker.list_training_jobs()["TrainingJobSummaries"])
    with pytest.raises(StepscopeError) as info:  # RuleFileError
        train_with_profiling(trainer(v3), rules_file=bad, wait=False)
    assert (
        "[rules.LowGPUUtilization] threshold_p95: Input should be less than or equal to 100"
        in info.value.one_line()
    )
    assert aws_endpoint.s3.list_objects_v2(Bucket=v3["bucket"]).get("KeyCount", 0) == 0
    assert len(aws_endpoint.sagemaker.list_training_jobs()["TrainingJobSummaries"]) == jobs_before


def test_local_mode_and_trainium_are_refused(v3: Any) -> None:
    from sagemaker.train.model_trainer import Mode

    from stepscope.attach.sdk_v3 import train_with_profiling

    with pytest.raises(AttachError, match="not in local-container mode"):
        train_with_profiling(trainer(v3, training_mode=Mode.LOCAL_CONTAINER), wait=False)
    with pytest.raises(AttachError, match=r"not supported on ml.trn1.32xlarge"):
        train_with_profiling(
            trainer(v3, instance_type="ml.trn1.32xlarge"), wait=False, debugger=True
        )


def test_unsupported_sdk_internals_are_a_clear_error(
    v3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    from sagemaker.train.model_trainer import ModelTrainer

    from stepscope.attach.sdk_v3 import train_with_profiling

    model_trainer = trainer(v3)
    monkeypatch.delattr(ModelTrainer, "_create_training_job_args")
    with pytest.raises(AttachError) as info:
        train_with_profiling(model_trainer, wait=False)
    line = info.value.one_line()
    assert (
        "does not build training jobs the way stepscope expects" in line
        and "apply_to_request" in line
    )
    monkeypatch.undo()

    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "2.0.0" if name == "sagemaker-train" else real(name),
    )
    with pytest.raises(
        AttachError, match=r"sagemaker-train 2.0.0 is newer than stepscope supports"
    ):
        train_with_profiling(model_trainer, wait=False)


# --- collectors mode (the default) ---------------------------------------------------------------
def uploaded(aws_endpoint: AwsEndpoint, sent: dict[str, Any], channel: str) -> dict[str, bytes]:
    """The files ModelTrainer uploaded for ``channel`` (an S3 prefix of plain files)."""
    (source,) = [c for c in sent["InputDataConfig"] if c["ChannelName"] == channel]
    uri = source["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    listed = aws_endpoint.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :].lstrip("/"): aws_endpoint.s3.get_object(
            Bucket=bucket, Key=o["Key"]
        )["Body"].read()
        for o in listed
    }


def test_collectors_entry_script_by_default(aws_endpoint: AwsEndpoint, v3: Any) -> None:
    from sagemaker.train.distributed import Torchrun

    from stepscope.attach.collectors import ENTRY_SHIM, collector_wheel_name

    src = Path(v3["src"])
    before = sorted(p.name for p in src.iterdir())
    model_trainer = trainer(v3, distributed=Torchrun())
    own_source = model_trainer.source_code
    _, sent, described = launch(aws_endpoint, model_trainer)
    assert sorted(p.name for p in src.iterdir()) == before  # the user's folder is as it was
    assert (
        model_trainer.source_code is own_source and own_source.entry_script == "train.py"
    )  # put back

    out = f"s3://{v3['bucket']}/out"
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": out,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert not set(sent) & {"ProfilerConfig", "ProfilerRuleConfigurations", "DebugHookConfig"}
    code = uploaded(aws_endpoint, sent, "code")
    wheel = collector_wheel_name()
    assert set(code) == {"train.py", "requirements.txt", ENTRY_SHIM, wheel}
    assert code["requirements.txt"].decode() == f"./{wheel}\n"
    assert "ENTRY = 'train.py'" in code[ENTRY_SHIM].decode()
    drivers = uploaded(aws_endpoint, sent, "sm_drivers")
    script = drivers["sm_train.sh"].decode()
    assert "install_requirements.py requirements.txt" in script  # the wheel goes in first
    assert "torchrun_driver.py" in script  # the Torchrun driver runs the shim as the entry script
    assert json.loads(drivers["sourcecode.json"])["entry_script"] == ENTRY_SHIM
    assert described["TensorBoardOutputConfig"]["LocalPath"] == "/opt/ml/output/tensorboard"


def test_collectors_command_is_prefixed(aws_endpoint: AwsEndpoint, v3: Any) -> None:
    from sagemaker.core.training.configs import SourceCode

    (Path(v3["src"]) / "reqs.txt").write_text("einops\n")
    model_trainer = trainer(v3)
    model_trainer.source_code = SourceCode(
        source_dir=v3["src"], requirements="reqs.txt", command="python train.py --epochs 3"
    )
    _, sent, _ = launch(aws_endpoint, model_trainer)
    script = uploaded(aws_endpoint, sent, "sm_drivers")["sm_train.sh"].decode()
    assert (
        "python -m stepscope.collectors.launcher --out /opt/ml/output/tensorboard "
        "--interval-ms 500 "
        "-- python train.py --epochs 3"
    ) in script
    code = uploaded(aws_endpoint, sent, "code")
    from stepscope.attach.collectors import collector_wheel_name

    assert code["reqs.txt"].decode() == f"einops\n./{collector_wheel_name()}\n"


def test_collectors_refuse_what_they_cannot_wrap(v3: Any) -> None:
    from sagemaker.core.training.configs import SourceCode

    from stepscope.attach.sdk_v3 import train_with_profiling

    model_trainer = trainer(v3)
    model_trainer.source_code = SourceCode(source_dir=v3["src"], command="cd x && python train.py")
    with pytest.raises(AttachError) as info:
        train_with_profiling(model_trainer, wait=False)
    assert (
        "chains shell commands" in info.value.one_line() and "--debugger" in info.value.one_line()
    )
    model_trainer.source_code = SourceCode(source_dir="s3://bucket/code/", entry_script="train.py")
    with pytest.raises(AttachError, match="is not a local folder"):
        train_with_profiling(model_trainer, wait=False)

"""The SDK-neutral fields and the boto3 path: rule file in, CreateTrainingJob fields out,
through a real HTTP SageMaker endpoint (moto) and botocore's validation. Collectors mode
(the default) first, then Debugger mode (``debugger=True``)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.errors import StepscopeError
from rules.builtin.cpu_bottleneck import CPUBottleneckParams
from rules.builtin.low_gpu_utilization import LowGPUUtilizationParams
from rules.ruleset import RuleSet, load_ruleset
from stepscope.attach.boto3_request import apply_to_request, create_training_job_fields
from stepscope.attach.common import (
    DEBUGGER_COLLECTION_PARAMETERS,
    RULE_EVALUATOR_ACCOUNTS,
    AttachError,
    build_fields,
    rule_evaluator_image,
)
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.sdk_env import profiling_part, rules_by_name, validate_create_training_job

REGION = "us-west-2"
IMAGE = "895741380848.dkr.ecr.us-west-2.amazonaws.com/sagemaker-debugger-rules:latest"
OUT = "s3://stepscope-bucket/jobs"
BUILTIN = {
    "LowGPUUtilization",
    "CPUBottleneck",
    "IOBottleneck",
    "StepOutlier",
    "GPUMemoryIncrease",
    "LoadBalancing",
    "BatchSize",
    "MaxInitializationTime",
    "Dataloader",
    "OverallSystemUsage",
    "ProfilerReport",
}

CUSTOM = """
[profiler]
system_monitor_interval_millis = 100
debugger_hook = true
hook_collections = ["losses", "gradients"]

[rules.LowGPUUtilization]
threshold_p95 = 55

[rules.CPUBottleneck]
threshold = 35
cpu_threshold = 85

[rules.LoadBalancing]
threshold = 0.25

[rules.IOBottleneck]
enabled = false
"""


#: the hook's collections for CUSTOM: its own two, then the training rules' (smdebug_rulesconfig's)
HOOK_WITH_TRAINING_RULES = [
    {"CollectionName": "losses"},
    {"CollectionName": "gradients"},
    {"CollectionName": "weights"},
    {"CollectionName": "relu_output", "CollectionParameters": {"include_regex": ".*relu_output"}},
    {
        "CollectionName": "custom_activations_collection",
        "CollectionParameters": {"include_regex": ".*tanh_input|.*sigmoid_input"},
    },
    {"CollectionName": "relu_input", "CollectionParameters": {"include_regex": ".*relu_input"}},
]
#: Debugger's training rules attached by default with the hook on (TensorVariance has no bounds)
TRAINING_ATTACHED = {
    "LossNotDecreasing",
    "Overfit",
    "Overtraining",
    "VanishingGradient",
    "ExplodingTensor",
    "WeightUpdateRatio",
    "DeadRelu",
    "SaturatedActivation",
    "PoorWeightInitialization",
    "AllZero",
    "StalledTrainingRule",
}


def debug_rules_by_name(request: dict[str, Any]) -> dict[str, dict[str, str]]:
    """RuleConfigurationName -> (image, RuleParameters) of the request's Debugger rules."""
    return {
        r["RuleConfigurationName"]: {**r["RuleParameters"], "image": r["RuleEvaluatorImage"]}
        for r in request.get("DebugRuleConfigurations") or []
    }


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def base_request(name: str = "stepscope-boto3-job") -> dict[str, Any]:
    """A minimal valid CreateTrainingJob request, as a user would write it."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": (
                "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.3-gpu-py311"
            ),
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "OutputDataConfig": {"S3OutputPath": OUT},
        "ResourceConfig": {
            "InstanceType": "ml.g5.xlarge",
            "InstanceCount": 2,
            "VolumeSizeInGB": 50,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


# --- the fields (Debugger mode) -----------------------------------------------------------------
def test_default_rule_set_fields() -> None:
    fields = create_training_job_fields(None, REGION, OUT, debugger=True)
    assert fields["ProfilerConfig"] == {
        "S3OutputPath": OUT,
        "ProfilingIntervalInMilliseconds": 500,
        "DisableProfiler": False,
    }
    rules = rules_by_name(fields)
    assert set(rules) == BUILTIN
    for name, params in rules.items():
        assert params["rule_to_invoke"] == name
        assert all(isinstance(v, str) for v in params.values())
    assert all(r["RuleEvaluatorImage"] == IMAGE for r in fields["ProfilerRuleConfigurations"])
    # SDK defaults, as smdebug_rulesconfig has them; unset mode is left out, not "None"
    assert rules["LowGPUUtilization"] == {
        "threshold_p95": "70",
        "threshold_p5": "10",
        "window": "500",
        "patience": "1000",
        "scan_interval_us": "60000000",
        "rule_to_invoke": "LowGPUUtilization",
    }
    assert "mode" not in rules["StepOutlier"]
    assert rules["OverallSystemUsage"] == {
        "scan_interval_us": "60000000",
        "rule_to_invoke": "OverallSystemUsage",
    }
    # ProfilerReport runs every rule itself: it carries all their values as overrides
    report = rules["ProfilerReport"]
    assert report["CPUBottleneck_threshold"] == "50" and report["LoadBalancing_threshold"] == "0.5"
    assert len(report) <= 100
    assert "DebugHookConfig" not in fields  # debugger_hook = false by default
    assert fields["TensorBoardOutputConfig"] == {
        "S3OutputPath": OUT,
        "LocalPath": "/opt/ml/output/tensorboard",
    }


def test_training_rules_attach_with_the_hook(tmp_path: Path) -> None:
    """``--debugger`` with the hook on: a Debugger rule container per enabled training rule,
    parameters as the rule file has them (strings, rule_to_invoke), none without the hook."""
    assert "DebugRuleConfigurations" not in create_training_job_fields(
        None, REGION, OUT, debugger=True
    )
    fields = create_training_job_fields(
        write(tmp_path, "[profiler]\ndebugger_hook = true\n"), REGION, OUT, debugger=True
    )
    validate_create_training_job({**base_request(), **fields})
    rules = debug_rules_by_name(fields)
    assert set(rules) == TRAINING_ATTACHED
    assert [r["RuleConfigurationName"] for r in fields["DebugRuleConfigurations"]][:3] == [
        "LossNotDecreasing",
        "Overfit",
        "Overtraining",
    ]
    for name, params in rules.items():
        assert params.pop("image") == IMAGE and params["rule_to_invoke"] == name
        assert all(isinstance(v, str) and v != "None" for v in params.values()), name
    assert rules["Overtraining"] == {
        "patience_train": "5",
        "patience_validation": "10",
        "delta": "0.1",
        "rule_to_invoke": "Overtraining",
    }
    assert rules["SaturatedActivation"]["threshold_tanh"] == "(-9.4999, 9.4999)"
    assert rules["SaturatedActivation"]["tensor_regex"] == ".*tanh_input, .*sigmoid_input"
    assert rules["PoorWeightInitialization"]["activation_inputs_regex"] == ".*relu_input"
    assert "tensor_regex" not in rules["DeadRelu"]  # no default on Debugger's page
    assert (
        rules["WeightUpdateRatio"]["epsilon"] == "1e-09"
        and "num_steps" not in rules["WeightUpdateRatio"]
    )
    assert rules["LossNotDecreasing"]["increase_threshold_percent"] == "5.0"
    assert rules["AllZero"]["collection_names"] == "gradients, weights, relu_output"
    # only the rules (and the collections) the file enables and configures
    custom = write(
        tmp_path,
        '[profiler]\ndebugger_hook = true\nhook_collections = ["losses"]\n'
        "[rules.DeadRelu]\nenabled = false\n[rules.PoorWeightInitialization]\nenabled = false\n"
        '[rules.TensorVariance]\nmax_threshold = 5.0\ncollection_names = "biases"\n'
        "[rules.Overtraining]\npatience_train = 50\n",
        "custom.toml",
    )
    fields = create_training_job_fields(custom, REGION, OUT, debugger=True)
    rules = debug_rules_by_name(fields)
    assert set(rules) == TRAINING_ATTACHED - {"DeadRelu", "PoorWeightInitialization"} | {
        "TensorVariance"
    }
    assert (
        rules["TensorVariance"]["max_threshold"] == "5.0"
        and "min_threshold" not in rules["TensorVariance"]
    )
    assert rules["Overtraining"]["patience_train"] == "50"
    assert [c["CollectionName"] for c in fields["DebugHookConfig"]["CollectionConfigurations"]] == [
        "losses",
        "gradients",
        "weights",
        "custom_activations_collection",
        "relu_output",
        "biases",
    ]


def test_training_rule_collections_match_smdebug_rulesconfig() -> None:
    """Each attached rule's hook collections include those smdebug_rulesconfig's own rule
    config asks for, with its include regexes."""
    rulesconfig = pytest.importorskip("smdebug_rulesconfig")
    configs = json.loads(
        (
            Path(rulesconfig.__file__).parent
            / "debugger_rules"
            / "rule_config_jsons"
            / "ruleConfigs.json"
        ).read_text()
    )
    from rules.registry import RULES

    for rule in RULES:
        if not getattr(rule, "debugger_builtin", False):
            continue
        assert configs[rule.id]["DebugRuleConfiguration"]["RuleConfigurationName"] == rule.id
        for c in configs[rule.id].get("CollectionConfigurations", []):
            assert c["CollectionName"] in rule.debugger_collections, rule.id  # type: ignore[attr-defined]
            regex = c.get("CollectionParameters", {}).get("include_regex")
            if regex:
                assert DEBUGGER_COLLECTION_PARAMETERS[c["CollectionName"]]["include_regex"] == regex


def test_saturated_activation_hook_saves_what_its_regex_names(tmp_path: Path) -> None:
    """smdebug_rulesconfig has no collection of tanh/sigmoid inputs: the hook gets a custom
    one whose include regex is the rule's default ``tensor_regex`` (AWS's page's example),
    and only while SaturatedActivation is attached."""
    import re

    from rules.builtin._training import split_list
    from rules.builtin.saturated_activation import SaturatedActivation, SaturatedActivationParams

    default = SaturatedActivationParams.model_validate({}).tensor_regex
    regex = DEBUGGER_COLLECTION_PARAMETERS["custom_activations_collection"]["include_regex"]
    assert regex == "|".join(split_list(default)) == ".*tanh_input|.*sigmoid_input"
    assert SaturatedActivation.debugger_collections == ("custom_activations_collection",)
    for name, matched in (
        ("net.3_tanh_input_0", True),
        ("gate_sigmoid_input_0", True),
        ("tanh_output_0", False),
        ("relu_input_0", False),
    ):
        assert bool(re.match(regex, name)) is matched, name
    hook = write(tmp_path, "[profiler]\ndebugger_hook = true\n")
    saved = {
        c["CollectionName"]: c.get("CollectionParameters")
        for c in create_training_job_fields(hook, REGION, OUT, debugger=True)["DebugHookConfig"][
            "CollectionConfigurations"
        ]
    }
    assert saved["custom_activations_collection"] == {"include_regex": regex}
    off = write(
        tmp_path,
        "[profiler]\ndebugger_hook = true\n[rules.SaturatedActivation]\nenabled = false\n",
        "off.toml",
    )
    fields = create_training_job_fields(off, REGION, OUT, debugger=True)
    assert "custom_activations_collection" not in {
        c["CollectionName"] for c in fields["DebugHookConfig"]["CollectionConfigurations"]
    }
    assert "SaturatedActivation" not in debug_rules_by_name(fields)


def test_apply_to_request_keeps_the_users_debugger_rules(tmp_path: Path) -> None:
    request = base_request()
    mine = {
        "RuleConfigurationName": "MyRule",
        "RuleEvaluatorImage": IMAGE,
        "RuleParameters": {"rule_to_invoke": "MyRule"},
    }
    old = {
        "RuleConfigurationName": "Overfit",
        "RuleEvaluatorImage": IMAGE,
        "RuleParameters": {"rule_to_invoke": "Overfit"},
    }
    request["DebugRuleConfigurations"] = [mine, old]
    assert apply_to_request(request, region=REGION, debugger=True)["DebugRuleConfigurations"] == [
        mine,
        old,
    ]  # hook off
    out = apply_to_request(
        request,
        rules_file=write(tmp_path, "[profiler]\ndebugger_hook = true\n"),
        region=REGION,
        debugger=True,
    )
    assert out["DebugRuleConfigurations"][0] == mine
    assert set(debug_rules_by_name(out)) == TRAINING_ATTACHED | {"MyRule"}
    assert (
        debug_rules_by_name(out)["Overfit"]["ratio_threshold"] == "0.1"
    )  # stepscope's replaces the same-named one
    validate_create_training_job(out)


def test_threshold_change_changes_rule_parameters(tmp_path: Path) -> None:
    before = rules_by_name(create_training_job_fields(None, REGION, OUT, debugger=True))
    after = rules_by_name(
        create_training_job_fields(write(tmp_path, CUSTOM), REGION, OUT, debugger=True)
    )
    assert (
        after["LowGPUUtilization"]["threshold_p95"]
        == "55"
        != before["LowGPUUtilization"]["threshold_p95"]
    )
    assert (
        after["CPUBottleneck"]["threshold"] == "35"
        and after["CPUBottleneck"]["cpu_threshold"] == "85"
    )
    assert after["LoadBalancing"]["threshold"] == "0.25"
    assert after["ProfilerReport"]["LowGPUUtilization_threshold_p95"] == "55"
    assert after["ProfilerReport"]["CPUBottleneck_threshold"] == "35"
    changed = {
        (rule, key)
        for rule in before.keys() & after.keys()
        for key in before[rule].keys() | after[rule].keys()
        if before[rule].get(key) != after[rule].get(key)
    }
    assert changed == {
        ("LowGPUUtilization", "threshold_p95"),
        ("CPUBottleneck", "threshold"),
        ("CPUBottleneck", "cpu_threshold"),
        ("LoadBalancing", "threshold"),
        ("ProfilerReport", "LowGPUUtilization_threshold_p95"),
        ("ProfilerReport", "CPUBottleneck_threshold"),
        ("ProfilerReport", "CPUBottleneck_cpu_threshold"),
        ("ProfilerReport", "LoadBalancing_threshold"),
    }
    assert "IOBottleneck" not in after  # enabled = false


def test_hook_interval_and_disabled_profiler(tmp_path: Path) -> None:
    fields = create_training_job_fields(write(tmp_path, CUSTOM), REGION, OUT, debugger=True)
    assert fields["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 100
    # the file's collections first, then those the attached Debugger training rules read
    assert fields["DebugHookConfig"] == {
        "S3OutputPath": OUT,
        "CollectionConfigurations": HOOK_WITH_TRAINING_RULES,
    }
    off = create_training_job_fields(
        write(
            tmp_path,
            "[profiler]\ndisable_profiler = true\ntensorboard_output = false\n",
            "off.toml",
        ),
        REGION,
        OUT,
        debugger=True,
    )
    assert off == {"ProfilerConfig": {"DisableProfiler": True}}


def test_rule_file_s3_path_wins(tmp_path: Path) -> None:
    rules = write(tmp_path, '[profiler]\ns3_output_path = "s3://other/prefix"\n')
    fields = create_training_job_fields(rules, REGION, OUT, debugger=True)
    assert fields["ProfilerConfig"]["S3OutputPath"] == "s3://other/prefix"
    assert fields["TensorBoardOutputConfig"]["S3OutputPath"] == "s3://other/prefix"


def test_rule_evaluator_image_per_region() -> None:
    assert rule_evaluator_image("us-west-2") == IMAGE
    assert rule_evaluator_image("cn-north-1") == (
        "618459771430.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-debugger-rules:latest"
    )
    assert rule_evaluator_image("eu-west-1").startswith(
        "929884845733.dkr.ecr.eu-west-1.amazonaws.com/"
    )
    with pytest.raises(AttachError, match="no evaluator image in region 'ap-southeast-3'"):
        rule_evaluator_image("ap-southeast-3")
    with pytest.raises(AttachError, match="no AWS region"):
        rule_evaluator_image(None)


def _sdk_debugger_json() -> Path | None:
    """The installed SDK's debugger.json, found through package metadata (no SDK import)."""
    for dist in ("sagemaker-core", "sagemaker"):
        try:
            files = importlib.metadata.files(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in files:
            if str(f).endswith("image_uri_config/debugger.json"):
                return Path(str(f.locate()))
    return None


def test_image_table_matches_installed_sdk() -> None:
    """stepscope's SDK-free table is the SDK's own debugger.json (whichever major is here)."""
    path = _sdk_debugger_json()
    if path is None:
        pytest.skip("no SageMaker SDK installed to compare with")
    config = json.loads(path.read_text())
    latest = config["versions"]["latest"]
    assert latest["repository"] == "sagemaker-debugger-rules"
    assert latest["registries"] == RULE_EVALUATOR_ACCOUNTS


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[rules.LowGPUUtilisation]\nthreshold_p95 = 60\n",
            "unknown rule 'LowGPUUtilisation'; did you mean 'LowGPUUtilization'?",
        ),
        (
            '[rules.CPUBottleneck]\nthreshold = "high"\n',
            "[rules.CPUBottleneck] threshold: Input should be a valid integer",
        ),
        (
            "[rules.CPUBottleneck]\nthreshhold = 40\n",
            "[rules.CPUBottleneck] unknown parameter 'threshhold'",
        ),
        (
            "[profiler]\nsystem_monitor_interval_millis = 300\n",
            "system_monitor_interval_millis = 300 is not accepted by SageMaker",
        ),
        ('[profiler]\ns3_output_path = "bucket/prefix"\n', "must be an s3://bucket/prefix URI"),
    ],
)
def test_bad_rule_file_is_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StepscopeError) as info:
        create_training_job_fields(write(tmp_path, text), REGION, OUT, debugger=True)
    line = info.value.one_line()
    assert message in line and "\n" not in line


def error_line(fn: Any, *args: Any, **kwargs: Any) -> str:
    """The one line the CLI would print for the StepscopeError ``fn`` raises."""
    with pytest.raises(StepscopeError) as info:
        fn(*args, **kwargs)
    line = info.value.one_line()
    assert "\n" not in line
    return line


def test_bad_programmatic_input() -> None:
    good = load_ruleset()
    line = error_line(
        build_fields,
        RuleSet(profiler=good.profiler, rules={"GPUHog": CPUBottleneckParams.model_validate({})}),
        REGION,
        OUT,
    )
    assert "unknown rule 'GPUHog'" in line and "known rules: LowGPUUtilization" in line
    line = error_line(
        build_fields,
        RuleSet(
            profiler=good.profiler,
            rules={"CPUBottleneck": LowGPUUtilizationParams.model_validate({})},
        ),
        REGION,
        OUT,
    )
    assert "rule 'CPUBottleneck' has parameters of type LowGPUUtilizationParams" in line
    assert "either a RuleSet or rules_file" in error_line(
        create_training_job_fields, good, REGION, OUT, rules_file="x.toml"
    )
    assert "--s3-output-path" in error_line(
        create_training_job_fields, good, REGION, None, debugger=True
    )
    assert "as a dict" in error_line(apply_to_request, ["not", "a", "request"])
    trn = base_request()
    trn["ResourceConfig"]["InstanceType"] = "ml.trn1.32xlarge"
    line = error_line(apply_to_request, trn, region=REGION, debugger=True)
    assert "not supported on ml.trn1.32xlarge" in line and "disable_profiler = true" in line


# --- apply_to_request, Debugger mode -----------------------------------------------------------
def test_apply_to_request_merges_without_mutating() -> None:
    request = base_request()
    request["TensorBoardOutputConfig"] = {"S3OutputPath": "s3://mine/tb"}
    request["ProfilerRuleConfigurations"] = [
        {
            "RuleConfigurationName": "Old",
            "RuleEvaluatorImage": IMAGE,
            "RuleParameters": {"rule_to_invoke": "Old"},
        }
    ]
    original = json.loads(json.dumps(request))
    out = apply_to_request(request, region=REGION, debugger=True)
    assert request == original
    assert out["TensorBoardOutputConfig"] == {"S3OutputPath": "s3://mine/tb"}  # the user's is kept
    assert set(rules_by_name(out)) == BUILTIN  # stepscope owns the profiler rules
    assert out["ProfilerConfig"]["S3OutputPath"] == OUT  # the job's output path
    validate_create_training_job(out)


def test_region_from_environment(aws_endpoint: AwsEndpoint) -> None:
    out = apply_to_request(base_request(), debugger=True)
    assert {r["RuleEvaluatorImage"] for r in out["ProfilerRuleConfigurations"]} == {IMAGE}


# --- through a real HTTP endpoint ----------------------------------------------------------------
def test_boto3_request_reaches_sagemaker(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    rules_file = write(tmp_path, CUSTOM)
    request = apply_to_request(
        base_request("stepscope-boto3-e2e"), rules_file=rules_file, region=REGION, debugger=True
    )
    validate_create_training_job(request)
    aws_endpoint.sagemaker.create_training_job(**request)

    sent = aws_endpoint.training_job_request("stepscope-boto3-e2e")
    validate_create_training_job(sent)
    expected = profiling_part(build_fields(load_ruleset(rules_file), REGION, OUT))
    assert profiling_part(sent) == expected
    assert rules_by_name(sent)["LowGPUUtilization"]["threshold_p95"] == "55"
    assert sent["DebugHookConfig"]["CollectionConfigurations"] == HOOK_WITH_TRAINING_RULES
    assert debug_rules_by_name(sent) == debug_rules_by_name(
        build_fields(load_ruleset(rules_file), REGION, OUT)
    )
    assert set(debug_rules_by_name(sent)) == TRAINING_ATTACHED

    described = aws_endpoint.sagemaker.describe_training_job(TrainingJobName="stepscope-boto3-e2e")
    assert profiling_part(described) == expected
    assert described["ProfilingStatus"] == "Enabled"
    assert {
        s["RuleConfigurationName"] for s in described["ProfilerRuleEvaluationStatuses"]
    } == BUILTIN - {"IOBottleneck"}


# --- collectors mode (the default) ---------------------------------------------------------------
LAUNCHER = [
    "python",
    "-m",
    "stepscope.collectors.launcher",
    "--out",
    "/opt/ml/output/tensorboard",
    "--interval-ms",
    "500",
    "--",
]


def with_entrypoint(*argv: str, name: str = "stepscope-boto3-job") -> dict[str, Any]:
    request = base_request(name)
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = list(argv)
    return request


def test_collectors_wrap_the_container_entrypoint() -> None:
    request = with_entrypoint("torchrun", "--nproc-per-node", "8", "train.py")
    original = json.loads(json.dumps(request))
    out = apply_to_request(request)
    assert request == original  # a copy
    assert out["AlgorithmSpecification"] == {
        **request["AlgorithmSpecification"],
        "ContainerEntrypoint": [*LAUNCHER, "torchrun", "--nproc-per-node", "8", "train.py"],
    }
    assert out["TensorBoardOutputConfig"] == {
        "S3OutputPath": OUT,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert not set(out) & {"ProfilerConfig", "ProfilerRuleConfigurations", "DebugHookConfig"}
    validate_create_training_job(out)
    # attaching twice wraps once
    assert (
        apply_to_request(out)["AlgorithmSpecification"]["ContainerEntrypoint"]
        == out["AlgorithmSpecification"]["ContainerEntrypoint"]
    )


def test_collectors_need_the_command() -> None:
    line = error_line(apply_to_request, base_request())
    assert "no AlgorithmSpecification.ContainerEntrypoint" in line and "--entrypoint" in line
    assert "debugger=True" in line
    out = apply_to_request(base_request(), entrypoint=["python", "/opt/ml/code/train.py"])
    assert out["AlgorithmSpecification"]["ContainerEntrypoint"] == [
        *LAUNCHER,
        "python",
        "/opt/ml/code/train.py",
    ]
    assert "one of them" in error_line(
        apply_to_request, with_entrypoint("python", "a.py"), entrypoint=["b"]
    )
    assert "entrypoint=" in error_line(create_training_job_fields, None, REGION, OUT)
    as_string = base_request()
    as_string["AlgorithmSpecification"]["ContainerEntrypoint"] = "python train.py"
    assert "list of strings" in error_line(apply_to_request, as_string)


def test_collectors_follow_the_rule_file_and_the_users_tensorboard(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        '[profiler]\nsystem_monitor_interval_millis = 1000\ns3_output_path = "s3://other/p"\n',
    )
    fields = create_training_job_fields(rules, None, OUT, entrypoint=["python", "train.py"])
    assert fields == {
        "AlgorithmSpecification": {
            "ContainerEntrypoint": [
                "python",
                "-m",
                "stepscope.collectors.launcher",
                "--out",
                "/opt/ml/output/tensorboard",
                "--interval-ms",
                "1000",
                "--",
                "python",
                "train.py",
            ]
        },
        "TensorBoardOutputConfig": {
            "S3OutputPath": "s3://other/p",
            "LocalPath": "/opt/ml/output/tensorboard",
        },
    }
    request = with_entrypoint("python", "train.py")
    request["TensorBoardOutputConfig"] = {
        "S3OutputPath": "s3://mine/tb",
        "LocalPath": "/opt/ml/output/mine",
    }
    request["ResourceConfig"]["InstanceType"] = "ml.trn1.32xlarge"  # the collectors are no Debugger
    out = apply_to_request(request)
    assert out["TensorBoardOutputConfig"] == request["TensorBoardOutputConfig"]  # kept
    argv = out["AlgorithmSpecification"]["ContainerEntrypoint"]
    assert (
        argv[argv.index("--out") + 1] == "/opt/ml/output/mine"
    )  # the collectors write what is uploaded


def test_container_entrypoint_runs_the_command_under_the_launcher(tmp_path: Path) -> None:
    """The wrapped ContainerEntrypoint, run here as the container would run it (this checkout's
    collectors on PYTHONPATH instead of the installed wheel): same arguments, same exit code,
    system metrics in the TensorBoard folder."""
    import os
    import subprocess
    import sys

    tb = tmp_path / "tensorboard"
    request = with_entrypoint(
        "python", "-c", "import sys, time; time.sleep(2); sys.exit(int(sys.argv[1]))", "5"
    )
    request["TensorBoardOutputConfig"] = {"S3OutputPath": OUT, "LocalPath": str(tb)}
    rules = write(tmp_path, "[profiler]\nsystem_monitor_interval_millis = 100\n")
    argv = apply_to_request(request, rules_file=rules)["AlgorithmSpecification"][
        "ContainerEntrypoint"
    ]
    argv = [sys.executable if a == "python" else a for a in argv]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 5, proc.stderr
    assert list((tb / "system" / "incremental").rglob("*.json")), proc.stderr


def test_collectors_request_reaches_sagemaker(aws_endpoint: AwsEndpoint) -> None:
    request = apply_to_request(
        with_entrypoint("python", "train.py", name="stepscope-boto3-collectors")
    )
    aws_endpoint.sagemaker.create_training_job(**request)
    sent = aws_endpoint.training_job_request("stepscope-boto3-collectors")
    validate_create_training_job(sent)
    assert sent["AlgorithmSpecification"]["ContainerEntrypoint"] == [
        *LAUNCHER,
        "python",
        "train.py",
    ]
    assert sent["TensorBoardOutputConfig"] == {
        "S3OutputPath": OUT,
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    assert "ProfilerConfig" not in sent and "ProfilerRuleConfigurations" not in sent

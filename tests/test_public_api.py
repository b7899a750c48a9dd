"""What users type: ``stepscope.attach`` and ``stepscope.collectors.profiling``, and the old
names (``rules.attach.*``, ``rules.profiling``) still working as the same objects."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_attach_entry_points_are_the_modules_functions() -> None:
    import stepscope.attach as attach
    from stepscope.attach import boto3_request, common, sdk_v2, sdk_v3

    assert attach.attach_to_estimator is sdk_v2.attach_to_estimator
    assert attach.train_with_profiling is sdk_v3.train_with_profiling
    assert attach.apply_to_request is boto3_request.apply_to_request
    assert attach.create_training_job_fields is boto3_request.create_training_job_fields
    assert attach.AttachError is common.AttachError
    assert set(attach.__all__) == {
        "AttachError",
        "attach_to_estimator",
        "train_with_profiling",
        "apply_to_request",
        "create_training_job_fields",
    }


def test_an_unknown_name_is_an_attribute_error() -> None:
    import stepscope.attach as attach

    try:
        attach.attach_to_anything  # noqa: B018
    except AttributeError as exc:
        assert "attach_to_anything" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_stepscope_attach_loads_no_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        import stepscope.attach
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("sagemaker", "boto3")
                     or m in ("stepscope.attach.sdk_v2", "stepscope.attach.sdk_v3")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_old_names_are_the_same_modules() -> None:
    import rules.attach.boto3_request
    import rules.attach.sdk_v2
    import rules.profiling
    import stepscope.attach.boto3_request
    import stepscope.attach.sdk_v2
    import stepscope.collectors.profiling

    assert rules.attach.sdk_v2 is stepscope.attach.sdk_v2
    assert rules.attach.boto3_request is stepscope.attach.boto3_request
    assert rules.profiling.profile_training is stepscope.collectors.profiling.profile_training
    from rules.attach import AttachError

    assert AttachError is stepscope.attach.AttachError

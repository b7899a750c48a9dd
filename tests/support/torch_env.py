"""Tests that need torch: skip without it, fail instead where torch must be there.

``make test`` runs those tests again in .venv-torch (``make torch-env``) with
``STEPSCOPE_REQUIRE_TORCH=1``: there a missing torch is a broken environment, not a reason
to skip.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
REQUIRE_TORCH_VAR = "STEPSCOPE_REQUIRE_TORCH"


def require_torch(needed_by: str, test_file: str) -> None:
    """Skip (or fail, under ``STEPSCOPE_REQUIRE_TORCH=1``) when torch is not installed;
    ``needed_by`` says what needs it, ``test_file`` how to run the tests where it is."""
    if HAS_TORCH:
        return
    msg = (
        f"torch is not installed in this interpreter ({sys.executable}); {needed_by} needs it: "
        "build .venv-torch with `make torch-env` and run "
        f"`.venv-torch/bin/python -m pytest {test_file}`"
    )
    if os.environ.get(REQUIRE_TORCH_VAR, "").strip() not in ("", "0"):
        pytest.fail(f"{REQUIRE_TORCH_VAR} is set but {msg}", pytrace=False)
    pytest.skip(msg)

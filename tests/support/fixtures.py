"""The one place tests find the shared real fixtures (never copied into the project).

Looks at ``$STEPSCOPE_FIXTURES`` first, then ``../shared/fixtures`` beside the checkout.
Tests that need them call :func:`fixtures_dir` and are skipped with a clear reason when
they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_fixtures() -> Path | None:
    env = os.environ.get("STEPSCOPE_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "fixtures")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def fixtures_dir(*parts: str) -> Path:
    """Path under the shared fixtures, or skip the calling test with the reason."""
    root = find_fixtures()
    if root is None:
        pytest.skip(
            "shared fixtures not found: set STEPSCOPE_FIXTURES or put them at ../shared/fixtures"
        )
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"fixture {'/'.join(parts)} not present under {root}")
    return path

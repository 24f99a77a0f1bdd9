"""ruff and mypy over the whole tree, as part of the test command (so CI runs them).

Their configuration is in the root ``pyproject.toml`` (``[tool.ruff]``, ``[tool.mypy]``);
the versions are pinned in ``constraints.txt``. ``unify-common`` is checked with
``mypy --strict``; the services, the CLI and the test kit with the default checks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: every package's source folder (tests are linted by ruff, not type-checked)
SERVICE_SOURCES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/src/*")
                         if p.is_dir() and not p.name.endswith(".egg-info")
                         and (p / "__init__.py").exists())


def _run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_ruff_finds_nothing():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", ".", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "All checks passed!"


@pytest.mark.timeout(600)
def test_mypy_strict_on_unify_common():
    result = _run(str(BIN / "mypy"), "--strict", "libs/unify-common/src/unify_common",
                  timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")


@pytest.mark.timeout(600)
def test_mypy_on_services_cli_and_test_kit():
    assert len(SERVICE_SOURCES) == 6, SERVICE_SOURCES
    result = _run(str(BIN / "mypy"), *SERVICE_SOURCES, "cli/src/unify_cli",
                  "libs/unify-testkit/src/unify_testkit", timeout=540)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")

"""Root pytest configuration: loads the real-component fixture layer for every test folder."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.components", "tests.fixtures.engine"]


def kind_of(path: Path, root: Path) -> str:
    """The marker a test file gets from its folder: ``e2e`` under ``tests/e2e/``,
    ``integration`` under any ``tests/integration/``, ``unit`` everywhere else."""
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:  # a test file outside the repository (e.g. made by a test)
        return "unit"
    pairs = set(zip(parts, parts[1:]))
    if ("tests", "e2e") in pairs:
        return "e2e"
    if ("tests", "integration") in pairs:
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test ``unit``, ``integration`` or ``e2e`` by its folder (see
    :func:`kind_of`; registered in pyproject.toml), so ``pytest -m unit`` runs the fast set."""
    for item in items:
        item.add_marker(getattr(pytest.mark, kind_of(Path(item.path), config.rootpath)))

"""unify-cli declares every distribution it imports (lazy imports inside functions too)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "unify_cli"


def imported_modules(root: Path) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports anywhere in a file)."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.relative_to(root).as_posix())
    return found


def declared_distributions(dist: str) -> set[str]:
    """Normalised names of ``dist``'s requirements, extras included (PEP 503 names)."""
    names = set()
    for requirement in importlib.metadata.requires(dist) or []:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names


def test_every_import_of_the_cli_is_a_declared_dependency():
    providers = importlib.metadata.packages_distributions()
    declared = declared_distributions("unify-cli")
    undeclared = {}
    for module, files in imported_modules(SOURCE).items():
        if module in sys.stdlib_module_names or module in ("__future__", "unify_cli"):
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) comes from no installed package"
        if not dists & declared:
            undeclared[module] = (sorted(dists), sorted(files))
    assert undeclared == {}, "imported by unify_cli but not declared in cli/pyproject.toml"


def test_the_cli_needs_no_service_package_for_dns_or_events():
    """`unify dns list` reads what dns411 publishes on NATS: dns411 is no dependency."""
    assert "unify-dns411" not in declared_distributions("unify-cli")
    assert "dns411" not in imported_modules(SOURCE)


def test_the_import_scan_sees_lazy_imports():
    lazy = imported_modules(SOURCE)
    # images.py imports docker inside a function; registry_cmd imports nats the same way
    assert "images.py" in lazy["docker"] and "registry_cmd.py" in lazy["nats"]

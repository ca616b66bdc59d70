"""Every third-party module the code imports comes from a declared distribution:
bot/ and sinks/ from ``dependencies``, tests/ from those plus the ``test`` extra
(and the benchmarks under tests/bench from the ``bench`` extra too)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_OWN = {"bot", "sinks", "tests"}


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {_normalized(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}


def _imported(paths: list[Path]) -> dict[str, Path]:
    """Each third-party top-level module imported by the files, with one file that imports it."""
    found: dict[str, Path] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in _OWN:
                    found.setdefault(top, path)
    return found


def _undeclared(paths: list[Path], declared: set[str]) -> list[str]:
    owners = importlib.metadata.packages_distributions()
    problems = []
    for module, path in sorted(_imported(paths).items()):
        # A module not installed here is looked for under its own name.
        distributions = {_normalized(d) for d in owners.get(module, [module])}
        if not distributions & declared:
            problems.append(f"{module} (imported by {path.relative_to(ROOT)}; from {', '.join(sorted(distributions))})")
    return problems


def _files(*folders: str, skip: str | None = None) -> list[Path]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return [p for p in files if skip is None or (ROOT / skip) not in p.parents]


def test_the_product_imports_only_its_dependencies() -> None:
    problems = _undeclared(_files("bot", "sinks"), _declared())
    assert not problems, "not in pyproject.toml's dependencies: " + "; ".join(problems)


def test_the_tests_import_only_dependencies_and_the_test_extra() -> None:
    problems = _undeclared(_files("tests", skip="tests/bench"), _declared("test"))
    assert not problems, "not in pyproject.toml's dependencies or test extra: " + "; ".join(problems)


def test_the_benchmarks_import_only_declared_distributions() -> None:
    problems = _undeclared(_files("tests/bench"), _declared("test", "bench"))
    assert not problems, "not in pyproject.toml's dependencies, test or bench extra: " + "; ".join(problems)

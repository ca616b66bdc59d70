"""The import structure: layers import only downward, and no module imports itself in a circle.

Read from the source with ``ast`` (every import counts, those under
``TYPE_CHECKING`` too: a circle for the type checker is a circle for a reader).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("bot", "sinks")

#: What each lower layer may import from this project, besides itself and the
#: leaf modules of ``bot/`` (those that import nothing of the project).
_ALLOWED: dict[str, tuple[str, ...]] = {
    "sinks": (),
    "bot.storage": (),
    "bot.objects": ("bot.storage",),
    "bot.voice": ("sinks",),
    "bot.web": ("bot.storage", "bot.objects", "sinks"),
}
#: The recording engine knows nothing of Discord or of the network.
_ENGINE_FORBIDDEN = ("discord", "davey", "nacl", "aiohttp")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from bot.storage import index" names a module too
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    paths = {_module_name(p): p for package in _PACKAGES for p in (_ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        graph[module] = {name for name in _imports(path, module) if name in paths and name != module}
    return graph


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _external_imports(module: str) -> set[str]:
    path = next(p for package in _PACKAGES for p in (_ROOT / package).rglob("*.py") if _module_name(p) == module)
    return {name.split(".")[0] for name in _imports(path, module)}


def test_lower_layers_import_only_downward() -> None:
    graph = _graph()
    leaves = {m for m, deps in graph.items() if _within(m, "bot") and m.count(".") == 1 and not deps}
    wrong = []
    for module, deps in sorted(graph.items()):
        layer = next((layer for layer in _ALLOWED if _within(module, layer)), None)
        if layer is None:
            continue
        allowed = (layer, *_ALLOWED[layer])
        wrong += [f"{module} imports {dep}" for dep in sorted(deps)
                  if dep not in leaves and not any(_within(dep, a) for a in allowed)]
    assert not wrong, "imports that run up a layer:\n" + "\n".join(wrong)


def test_the_engine_imports_nothing_of_discord() -> None:
    wrong = [f"{m} imports {name}" for m in sorted(_graph()) if _within(m, "sinks")
             for name in sorted(_external_imports(m)) if name in _ENGINE_FORBIDDEN]
    assert not wrong, "\n".join(wrong)


def test_the_object_store_imports_nothing_of_discord() -> None:
    # Uploads and downloads run in the bot, in a download front and in tools alike.
    wrong = [f"{m} imports {name}" for m in sorted(_graph()) if _within(m, "bot.objects")
             for name in sorted(_external_imports(m)) if name in ("discord", "davey", "nacl")]
    assert not wrong, "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (package __init__ re-exports excluded), or None."""
    edges = {m: {d for d in deps if not _within(m, d)} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circle() -> None:
    circle = _cycle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize("graph, circle", [
    ({"bot.app": {"bot.commands"}, "bot.commands": {"bot.app"}}, ["bot.app", "bot.commands", "bot.app"]),
    ({"bot.app": {"bot.commands"}, "bot.commands": set()}, None),
])
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], circle: list[str] | None) -> None:
    assert _cycle(graph) == circle


def test_only_the_web_layer_imports_soundfile() -> None:
    # bot/web/__init__.py picks the system's libsndfile before soundfile loads its own
    # (bot/web/sndlib.py); a module elsewhere importing soundfile first would undo that.
    wrong = [m for m in sorted(_graph()) if "soundfile" in _external_imports(m) and not _within(m, "bot.web")]
    assert not wrong, "import soundfile outside bot.web: " + ", ".join(wrong)


def test_the_embedded_default_loads_no_database_driver_or_s3_client() -> None:
    """boto3 (with botocore's client machinery) and psycopg are most of a second of every
    start between them: a bot, a front or a sync without DATABASE_URL and STORAGE_URL
    must not import them (botocore's exception classes alone are cheap and allowed)."""
    probe = ("import sys, bot.__main__, bot.app, bot.front, bot.sync, bot.runner; "
             "print(sorted(m for m in ('boto3', 'botocore.session', 'psycopg') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=_ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr

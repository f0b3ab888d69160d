"""The layers hold: read every module's imports (top-level and inside functions) from its source.

* the core (``pollinator``) never imports an adapter (``pollinator_airflow``, ``pollinator_prefect``);
* configuration, the Colonies client and ColonyFS (``pollinator.config``, ``pollinator.colonies``,
  ``pollinator.cfs``) never import the local colony, the executor or the CLI (``pollinator.dev``,
  ``pollinator.executor``, ``pollinator.cli``): a production worker must not find a dev colony by surprise,
  and the client must not depend on the things built on it;
* the run pipeline (``pollinator.run``) imports no CLI, local colony or executor either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core" / "pollinator"

RULES = {
    "pollinator": ("pollinator_airflow", "pollinator_prefect"),
    "pollinator.config": ("pollinator.dev", "pollinator.executor", "pollinator.cli"),
    "pollinator.colonies": ("pollinator.dev", "pollinator.executor", "pollinator.cli", "pollinator.run"),
    "pollinator.cfs": ("pollinator.dev", "pollinator.executor", "pollinator.cli", "pollinator.run"),
    "pollinator.run": ("pollinator.dev", "pollinator.executor", "pollinator.cli"),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_walk_sees_the_core():
    names = {_module_name(p) for p in _modules()}
    assert {"pollinator.config", "pollinator.run.job", "pollinator.cfs.engine", "pollinator.colonies.client"} <= names


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_never_imports_what_is_built_on_it(layer):
    broken = []
    for path in _modules():
        name = _module_name(path)
        if name != layer and not name.startswith(layer + "."):
            continue
        for imported in _imports(path):
            for forbidden in RULES[layer]:
                if imported == forbidden or imported.startswith(forbidden + "."):
                    broken.append(f"{name} imports {imported}")
    assert not broken, "\n".join(sorted(set(broken)))

"""The README's commands and the docs' code blocks stay true to what is built."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_starts_with_the_two_setup_commands():
    first = _blocks(ROOT / "README.md", "bash")[0].strip().splitlines()
    commands = [line.split("#")[0].strip() for line in first]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_python_blocks_parse(path):
    for block in _blocks(path, "python"):
        ast.parse(block)


def _cli_commands() -> set[str]:
    from typer.main import get_command

    from pollinator.cli.main import app

    group = get_command(app)
    names = set(group.list_commands(None))  # lazy commands are listed by name and built on demand
    for name in list(names):
        for sub in getattr(group.get_command(None, name), "commands", {}) or {}:
            names.add(f"{name} {sub}")
    return names


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_pollinator_commands_in_docs_exist(path):
    known = _cli_commands()
    text = "\n".join(_blocks(path, "bash"))
    for match in re.finditer(r"^\s*(?:[\w$()<>\s]*?\s)?pollinator ((?:[a-z]+)(?: [a-z]+)?)", text, re.M):
        words = match.group(1).split()
        assert words[0] in known or " ".join(words) in known, f"{path.name}: `pollinator {match.group(1)}`"


@pytest.mark.parametrize("example", sorted((ROOT / "example_dags").glob("*.py")), ids=lambda p: p.name)
def test_examples_import(example):
    """Importing an example must not run anything (no colony needed) and must not fail."""
    text = example.read_text()
    if re.search(r"^\s*(from|import) (pollinator_)?airflow\b", text, re.M):
        pytest.importorskip("airflow.sdk", reason="an Airflow example: pip install 'pollinator[airflow]'")
    if re.search(r"^\s*(from|import) (pollinator_)?prefect\b", text, re.M):
        pytest.importorskip("prefect.flows", reason="a Prefect example: pip install 'pollinator[prefect]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "core"), str(ROOT)])}  # this tree, not an install
    out = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(example)!r}, run_name='x')"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_demo_script_help_imports():
    out = subprocess.run([sys.executable, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())",
                          str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True)
    assert out.returncode == 0

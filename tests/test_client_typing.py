"""The async client's typed declarations say what rpc.Messages does: same methods, same parameters."""

from __future__ import annotations

import ast
from pathlib import Path

COLONIES = Path(__file__).resolve().parents[1] / "core" / "pollinator" / "colonies"


def _methods(path: Path, class_name: str, *, typed_block: bool) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    body = cls.body
    if typed_block:
        body = next(n for n in cls.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING").body
    return {f.name: f for f in body
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and not f.name.startswith("_")}


def test_async_declarations_match_the_messages():
    messages = _methods(COLONIES / "rpc.py", "Messages", typed_block=False)
    declared = _methods(COLONIES / "client.py", "AsyncColoniesClient", typed_block=True)
    assert sorted(declared) == sorted(messages)
    for name, fn in messages.items():
        assert fn.returns is not None, f"Messages.{name} has no return type"
        assert ast.unparse(declared[name].args) == ast.unparse(fn.args), name
        assert ast.unparse(declared[name].returns) == ast.unparse(fn.returns), name

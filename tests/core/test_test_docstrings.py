"""The tests' own style: every test says in one docstring line the behaviour it checks."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def offenders(root: Path) -> list[str]:
    """``path:line name: why`` for each ``test_*`` function under ``root`` lacking a one-liner."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_"):
                continue
            doc = ast.get_docstring(node, clean=False)
            where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
            if doc is None or not doc.strip():
                found.append(f"{where}: no docstring")
            elif "\n" in doc.strip():
                found.append(f"{where}: a docstring of {len(doc.strip().splitlines())} lines")
    return found


def test_every_test_has_a_one_line_docstring() -> None:
    """Each test_* function under tests/ has a docstring, and it is one line (more goes in a #)."""
    assert offenders(TESTS) == []


def test_the_scan_finds_multi_line_and_missing_docstrings(tmp_path: Path) -> None:
    """The scan names a two-line docstring and a missing one, in a class too, not a one-liner."""
    (tmp_path / "test_a.py").write_text(
        'def test_one():\n    """Only."""\n\n\n'
        'async def test_two():\n    """First.\n\n    More.\n    """\n\n\n'
        "class TestC:\n    def test_three(self):\n        pass\n\n"
        '    def helper(self):\n        """No test.\n\n        Two lines."""\n'
    )
    assert offenders(tmp_path) == [
        "test_a.py:5 test_two: a docstring of 3 lines",
        "test_a.py:13 test_three: no docstring",
    ]

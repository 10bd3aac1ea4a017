"""docs/reliability.md: every row of the fault matrix names tests, and every named test exists."""

from __future__ import annotations

import ast
import re

from faultkit import REPO

HERE = REPO / "tests" / "reliability"


def defined_tests() -> dict[str, set[str]]:
    out = {}
    for path in HERE.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out[path.name] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return out


def test_every_row_names_existing_tests():
    text = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    files = dict(re.findall(r"`(\w)` = `(test_fault_\w+\.py)`", text))
    tests = defined_tests()
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| fault", "|---"))]
    assert len(rows) > 50
    named = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 3 and cells[2], row
        for letter, name in re.findall(r"\b(\w)::(test_\w+)", cells[2]):
            assert name in tests[files[letter]], f"{files[letter]}::{name} (row: {cells[0]})"
            named.add((files[letter], name))
        assert re.search(r"\b\w::test_\w+", cells[2]), row
    unnamed = {(f, t) for f, names in tests.items() for t in names} - named
    assert not unnamed, f"tests missing from docs/reliability.md: {sorted(unnamed)}"

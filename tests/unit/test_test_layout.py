"""The test tree keeps its layers: fixtures live in tests/fixtures (no test file imports
another), and every test module of a server layer is marked integration (so that
``pytest -m "not integration"`` starts no server)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SERVER_LAYERS = ("integration", "faults", "e2e")


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_file_imports_another(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("tests."):
            assert name.startswith("tests.fixtures"), (
                f"{path.name} imports {name}: move it to tests/fixtures"
            )


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if p.parts[-2] in SERVER_LAYERS and p.name.startswith("test_")],
    ids=lambda p: str(p.relative_to(TESTS)),
)
def test_server_layers_are_marked_integration(path: Path) -> None:
    text = path.read_text()
    assert "pytestmark" in text and "pytest.mark.integration" in text, path
    if path.parts[-2] == "e2e":
        assert "pytest.mark.e2e" in text, path
